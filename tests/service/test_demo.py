"""The demo's own pieces that need no Airflow run: its AIRFLOW_HOME is made private as `dc2 serve`
makes its home, the task states it reads back from `airflow dags test`'s log, and the Object summary
it prints, which is the same text `dc2 object-pipeline` prints (one method on the result)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dc2tasks.products.object_pipeline import PipelineResult
from dc2tasks.service.demo import make_home_private, task_states
from dc2tasks.service.demo_sample import has_demo_sample, make_central


def test_the_demo_home_is_made_private_and_what_was_tightened_is_said(tmp_path: Path, capsys) -> None:
    home = tmp_path / "airflow"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "dc2-job-token").write_text("t" * 64)
    os.chmod(home / "dc2-job-token", 0o644)
    assert make_home_private(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "dc2-job-token").stat().st_mode) == 0o600
    assert capsys.readouterr().err == (
        f"dc2 demo: 2 paths under {home} were readable by others: now only by this account\n"
    )
    assert make_home_private(tmp_path / "new" / "airflow")
    assert stat.S_IMODE((tmp_path / "new" / "airflow").stat().st_mode) == 0o700
    assert capsys.readouterr().err == ""  # made private: nothing to tell


def test_a_symlinked_demo_home_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    (tmp_path / "airflow").symlink_to(tmp_path / "elsewhere")
    assert not make_home_private(tmp_path / "airflow")
    assert capsys.readouterr().err == (
        f"dc2 demo: {tmp_path / 'airflow'} (AIRFLOW_HOME) is not a directory (a symlink?); remove it or "
        "choose another --workdir\n"
    )
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o755  # not followed


def test_task_states_are_the_last_one_each_task_reported() -> None:
    log = "\n".join([
        "[..] INFO - running task <TaskInstance: dc2_demo.object.merge_tract manual__2026 [queued]> ok",
        "[..] INFO - Task finished new_state=deferred",
        "[..] INFO - running task <TaskInstance: dc2_demo.source manual__2026 [queued]> ok",
        "[..] INFO - Task finished new_state=failed",
        "[..] INFO - running task <TaskInstance: dc2_demo.object.merge_tract manual__2026 [deferred]> ok",
        "[..] INFO - Task finished new_state=success",
    ])
    assert task_states(log) == {"object.merge_tract": "success", "source": "failed"}
    assert list(task_states(log)) == ["object.merge_tract", "source"]  # in the order they first ran
    assert task_states("new_state=success\n") == {}  # no task running yet: nothing to attribute


def test_the_object_summary_names_every_file_config_and_step(tmp_path: Path) -> None:
    obj = tmp_path / "object" / "object_tract_4850.hdf5"
    obj.parent.mkdir()
    obj.write_bytes(b"x" * 2_500_000)
    cfg = tmp_path / "gcr-catalogs" / "dc2_object_demo.yaml"
    result = PipelineResult(
        tmp_path, [4850, 4851], rows={4850: 12, 4851: 0}, files={"object": [obj]},
        configs={"object": cfg}, pixel_scale=0.185, seconds={"merge": 1.25, "gcr": 0.04},
    )
    assert result.summary() == (
        f"Object catalog of tracts 4850, 4851 in {tmp_path}:\n"
        f"  object       {obj}  (2.5 MB)\n"
        f"  gcr config   {cfg}  (object)\n"
        "Primary objects: tract 4850: 12, tract 4851: 0. Pixel scale 0.185 arcsec/px. "
        "Time: merge 1.2 s, gcr 0.0 s."
    )


def test_the_work_directory_central_is_0755_and_a_sample_needs_its_visit_list(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        central = make_central(tmp_path / "w")
    finally:
        os.umask(old)
    assert central == tmp_path / "w" / "central"
    assert stat.S_IMODE(central.stat().st_mode) == 0o755
    (tmp_path / "w" / "sample-repo").mkdir()
    assert not has_demo_sample(tmp_path / "w")  # half-made: no visits.txt yet
    (tmp_path / "w" / "sample-repo" / "visits.txt").write_text("")
    assert has_demo_sample(tmp_path / "w")

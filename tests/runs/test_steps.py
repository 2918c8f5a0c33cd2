"""The DAG's job scripts and finishing commands, run for real with bash on a sample repository (every
array element in turn, as Slurm would), then installed: the products must load through GCRCatalogs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dc2tasks.products.errors import InputError
from dc2tasks.runs.config import PRODUCTS, RunConfig
from dc2tasks.runs.loader import parse_run_config
from dc2tasks.runs.params import validate_params
from dc2tasks.runs.steps import (
    finalize_commands,
    install_command,
    inventory_command,
    plan_run,
    rendered_catalog_configs,
    step_scripts,
)
from dc2tasks.sample import SampleConfig, make_sample_repo

DC2 = str(Path(sys.executable).with_name("dc2"))
CENTRE = tuple(f"{x},{y}" for x in (2, 3, 4) for y in (2, 3, 4))
ALL = list(PRODUCTS)


def _config(tmp: Path, repo: Path, visits: list[int], **extra) -> RunConfig:
    data = {
        "name": "steptest",
        "backend": "local",
        "repository": str(repo),
        "rerun": "multiband",
        "tracts": [4850],
        "visits": visits,
        "pixel_scale": 0.2,
        "products": ALL,
        "working_dir": str(tmp / "work"),
        "central": {"dir": str(tmp / "central")},
        "slurm": {"visits_per_array_element": 2},
        **extra,
    }
    return parse_run_config(data, tmp / "steptest.yaml")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("steps")
    return make_sample_repo(root / "repo", SampleConfig(patches=CENTRE, objects_per_patch=80, visits=3))


def _bash(script: str, index: int, cwd: Path) -> None:
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(index))
    r = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"script failed:\n{script}\n--- stderr:\n{r.stderr}"


def test_scripts_make_every_product_and_install_loads_in_gcr(sample, tmp_path) -> None:
    visits = sample.visit_ids()
    config = _config(tmp_path, sample.root, visits)
    plan = plan_run(config, validate_params({}, config))
    scripts = step_scripts(config, plan, DC2)
    assert list(scripts) == [
        "merge_tract",
        "trim",
        "dpdd",
        "merge_parquet",
        "source",
        "forced_source",
        "dia_source",
        "dia_object",
    ]
    assert scripts["source"].array_size == 2  # 3 visits, 2 per element
    assert scripts["merge_tract"].array_size == 1
    (tmp_path / "central").mkdir()
    inventory = subprocess.run(inventory_command(config, plan, DC2), capture_output=True, text=True)
    assert inventory.returncode == 0, inventory.stderr  # as the DAG's first task: its report is kept
    for step in scripts.values():
        for index in range(step.array_size or 1):
            _bash(step.script, index, tmp_path)
    work = Path(plan.work_dir)
    assert sorted(p.name for p in (work / "source").glob("*.parquet")) == sorted(
        f"src_visit_{v}.parquet" for v in visits
    )
    assert (work / "dpdd_object" / "dpdd_steptest_object.parquet").is_file()
    jobs = json.dumps([{"job_id": "1", "state": "COMPLETED"}])
    for directory in plan.directories:
        for command in finalize_commands(config, plan, directory, DC2, "abc123"):
            r = subprocess.run(
                command.argv, input=jobs if command.jobs_on_stdin else None, capture_output=True, text=True
            )
            assert r.returncode == 0, f"{command.argv}: {r.stderr}"
        r = subprocess.run(install_command(config, plan, directory, DC2), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "installed"
        # what a dry run shows is what was installed, key for key
        rendered = rendered_catalog_configs(config, plan, directory)
        installed = tmp_path / "central" / directory / "catalog_configs"
        assert {p.stem: yaml.safe_load(p.read_text()) for p in installed.glob("*.yaml")} == rendered
    from dc2tasks.service.demo import load_with_gcr

    for directory, catalog, column in [
        ("object", "dc2_object_steptest", "objectId"),
        ("source", "dc2_source_steptest", "sourceId"),
        ("dia_object", "dc2_dia_object_steptest", "diaObjectId"),
    ]:
        cfg = tmp_path / "central" / directory / "catalog_configs" / f"{catalog}.yaml"
        assert yaml.safe_load(cfg.read_text())["base_dir"] == str(
            tmp_path / "central" / directory / "current"
        )
        assert len(load_with_gcr(cfg, [column])[column]) > 0


def test_params_subset_and_rerun_change_the_plan(sample, tmp_path) -> None:
    config = _config(tmp_path, sample.root, sample.visit_ids())
    params = validate_params(
        {"products": ["source"], "visits": [sample.visit_ids()[0]], "force": True}, config
    )
    plan = plan_run(config, params)
    scripts = step_scripts(config, plan, "dc2")
    assert list(scripts) == ["source"]
    assert f"--visits {sample.visit_ids()[0]} " in scripts["source"].script
    assert "--force" in scripts["source"].script and scripts["source"].array_size == 1
    other = plan_run(config, validate_params({"rerun": "newer"}, config))
    assert other.work_dir == f"{config.working_dir}/newer" and other.rerun == "newer"


def test_auto_pixel_scale_is_refused_for_object_steps(sample, tmp_path) -> None:
    config = _config(tmp_path, sample.root, sample.visit_ids(), pixel_scale="auto")
    with pytest.raises(InputError, match="pixel_scale: 'auto' is not supported"):
        plan_run(config, validate_params({}, config))
    plan = plan_run(config, validate_params({"products": ["forced_source"]}, config))
    assert list(step_scripts(config, plan)) == ["forced_source"]


def test_qa_script_golden(sample, tmp_path) -> None:
    """One `dc2 qa` job per product: against the inventory's report, the truth, the run file's
    thresholds and the plan's tracts and visits; --enforce only when the gate enforces."""
    from dc2tasks.catalogue import CATALOGUE
    from dc2tasks.runs.steps import qa_script

    truth = sample.root / "truth"
    config = _config(tmp_path, sample.root, [11, 12], qa={"truth": str(truth), "thresholds": {"mag_max": 30}})
    plan = plan_run(config, validate_params({}, config))
    work = tmp_path / "work"
    step = qa_script(CATALOGUE["trim_object"], config, plan, "/opt/dc2")
    assert (step.step, step.array_size) == ("qa", None)
    assert step.script == (
        "set -euo pipefail\n/opt/dc2 --version\n"
        f"/opt/dc2 qa {work}/object --product trim_object --against {work}/inventory.json --truth {truth} "
        "--thresholds '{\"mag_max\":30}' --tracts 4850 --visits 11 12 --enforce\n"
    )
    warn = plan_run(config, validate_params({"qa": "warn", "products": ["forced_source"]}, config))
    assert qa_script(CATALOGUE["forced_source"], config, warn, "dc2").script.splitlines()[-1] == (
        f"dc2 qa {work}/forced_source --product forced_source --against {work}/inventory.json "
        f"--truth {truth} " + "--thresholds '{\"mag_max\":30}' --tracts 4850 --visits 11 12"
    )
    assert install_command(config, warn, "forced_source")[-2:] == ["--qa-mode", "warn"]
    approve = plan_run(config, validate_params({"qa": "approve"}, config))
    assert install_command(config, approve, "object", approved_by="alice")[-4:] == [
        "--qa-mode", "approve", "--approved-by", "alice"]
    dry = plan_run(config, validate_params({"dry_run": True}, config))  # installs nothing: no gate
    assert "--qa-mode" not in install_command(config, dry, "object")

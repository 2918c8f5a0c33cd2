"""The run DAG's own task bodies (dc2tasks.airflow.run_tasks), called as Airflow calls them but
without a DAG: a context with the trigger's params or the plan's XCom, the local backend's real
commands."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dc2tasks.airflow import run_tasks
from dc2tasks.airflow.operators.step import PLAN_TASK
from dc2tasks.runs.loader import parse_run_config
from dc2tasks.runs.steps import rendered_catalog_configs


class _TaskInstance:
    """What the bodies read of a task instance: the plan task's XCom."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.plan if task_ids == PLAN_TASK and key == "return_value" else None


def _config(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "visits.txt").write_text("100\n101\n")
    data = {
        "name": "tasks",
        "backend": "local",
        "repository": str(repo),
        "tracts": [4850],
        "visits": str(repo / "visits.txt"),
        "pixel_scale": 0.2,
        "products": ["object", "trim_object", "source"],
        "working_dir": str(tmp_path / "work"),
        "central": {"dir": str(tmp_path / "central")},
    }
    return parse_run_config(data, tmp_path / "tasks.yaml")


def test_plan_makes_the_log_directory_and_returns_the_plan(tmp_path) -> None:
    config = _config(tmp_path)
    plan = run_tasks.plan_task(config, {"params": {"products": ["object"], "tracts": [4850]}})
    assert list(plan["products"]) == ["object"] and list(plan["tracts"]) == [4850]
    logs = tmp_path / "work" / "logs"
    assert logs.is_dir() and stat.S_IMODE(logs.stat().st_mode) == 0o750
    dry = run_tasks.plan_task(config, {"params": {"dry_run": True}})
    assert dry["dry_run"] is True


def test_a_dry_run_finalize_returns_every_config_and_runs_nothing(tmp_path) -> None:
    config = _config(tmp_path)
    plan = run_tasks.plan_task(config, {"params": {"dry_run": True}})
    got = run_tasks.finalize_task(config, {"ti": _TaskInstance(plan)}, [])
    from dc2tasks.runs.steps import RunPlan

    run_plan = RunPlan.from_dict(plan)
    expected = {}
    for directory in ("object", "source"):
        expected |= rendered_catalog_configs(config, run_plan, directory)
    assert got == expected
    assert sorted(got) == ["dc2_object_tasks", "dc2_object_tasks_all_columns", "dc2_source_tasks"]
    assert not (tmp_path / "work").exists()


def test_finalize_and_install_fail_naming_the_command(tmp_path) -> None:
    config = _config(tmp_path)
    plan = run_tasks.plan_task(config, {"params": {"products": ["source"]}})
    context = {"ti": _TaskInstance(plan)}
    missing = r"^gcr-config failed \(exit 2\):\n.*work/source: cannot list the product's files: No such file"
    with pytest.raises(AirflowFailException, match=missing):
        run_tasks.finalize_task(config, context, [])
    with pytest.raises(AirflowFailException, match=r"^install source failed \(exit 2\)"):
        run_tasks.install_task(config, context)


@pytest.fixture(scope="module")
def sample_without_dia(tmp_path_factory):
    from dc2tasks.sample import SampleConfig, make_sample_repo

    root = tmp_path_factory.mktemp("inventory")
    sample = make_sample_repo(
        root / "repo", SampleConfig(patches=("2,2", "2,3"), objects_per_patch=30, visits=1, dia=False)
    )
    sample.write_visit_list(root / "repo" / "visits.txt")
    return sample


def _sample_config(sample, tmp_path: Path):
    data = {
        "name": "inv",
        "backend": "local",
        "repository": str(sample.root),
        "rerun": sample.rerun,
        "tracts": [4850],
        "visits": str(sample.root / "visits.txt"),
        "pixel_scale": 0.2,
        "products": ["object", "trim_object", "source", "dia_source", "dia_object"],
        "working_dir": str(tmp_path / "work"),
        "central": {"dir": str(tmp_path / "central")},
    }
    return parse_run_config(data, tmp_path / "inv.yaml")


class _Pulls:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.values.get(task_ids) if key == "return_value" else None


def test_inventory_skips_products_without_inputs_and_plan_records_why(sample_without_dia, tmp_path) -> None:
    import json

    config = _sample_config(sample_without_dia, tmp_path)
    found = run_tasks.inventory_task(config, {"params": {}})
    assert found["skipped"] == {
        "dia_source": "inputs absent: no readable deepDiff_diaSrc, deepDiff_differenceExp in the scope",
        "dia_object": "inputs absent: no readable deepDiff_diaObject in the scope",
    }
    assert found["products"]["object"]["status"] == "complete"
    assert found["products"]["source"]["status"] == "complete"
    report = json.loads((tmp_path / "work" / "inventory.json").read_text())
    assert report["products"]["object"]["datasets"]["deepCoadd_ref"]["found"] == 2
    plan = run_tasks.plan_task(config, {"params": {}, "ti": _Pulls({run_tasks.INVENTORY_TASK: found})})
    assert list(plan["products"]) == ["object", "trim_object", "source"]
    assert plan["skipped"] == found["skipped"]


def test_inventory_fails_when_nothing_asked_for_can_be_made(sample_without_dia, tmp_path) -> None:
    config = _sample_config(sample_without_dia, tmp_path)
    params = {"products": ["dia_source", "dia_object"]}
    with pytest.raises(AirflowFailException, match=r"^inventory: nothing this run asks for can be made "
                       r"from .*: dia_source: inputs absent: no readable deepDiff_diaSrc"):
        run_tasks.inventory_task(config, {"params": params})


def test_inventory_of_a_run_making_nothing_from_the_repository_runs_nothing(
    sample_without_dia, tmp_path
) -> None:
    config = _sample_config(sample_without_dia, tmp_path)
    assert run_tasks.inventory_task(config, {"params": {"products": ["trim_object"]}}) == {
        "skipped": {}, "products": {}
    }
    assert not (tmp_path / "work").exists()

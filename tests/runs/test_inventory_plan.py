"""The plan's use of the inventory: which products are skipped and why, and the command it runs."""

from __future__ import annotations

from pathlib import Path

from dc2tasks.runs.loader import parse_run_config
from dc2tasks.runs.params import validate_params
from dc2tasks.runs.steps import (
    INVENTORY_FILE,
    RunPlan,
    finalize_commands,
    inventory_command,
    inventory_skips,
    plan_run,
)


def _config(tmp_path: Path, **extra):
    data = {
        "name": "inv",
        "backend": "local",
        "repository": "/repo",
        "rerun": "multiband",
        "tracts": [4850, 4851],
        "visits": [100, 101],
        "pixel_scale": 0.2,
        "bands": ["g", "r", "i"],
        "products": ["object", "trim_object", "dpdd_object", "source", "dia_source", "dia_object"],
        "working_dir": "/work",
        "central": {"dir": "/central"},
        **extra,
    }
    return parse_run_config(data, tmp_path / "inv.yaml")


def test_absent_inputs_skip_the_product_and_those_needing_it() -> None:
    products = ["object", "trim_object", "dpdd_object", "source", "dia_source", "dia_object"]
    report = {
        "object": {"status": "absent", "reason": "no readable deepCoadd_ref in the scope"},
        "trim_object": {"status": "derived", "reason": ""},
        "dpdd_object": {"status": "derived", "reason": ""},
        "source": {"status": "partial", "reason": "some inputs are missing or unreadable"},
        "dia_source": {"status": "complete", "reason": ""},
        "dia_object": {"status": "absent", "reason": "no readable deepDiff_diaObject in the scope"},
    }
    assert inventory_skips(products, report) == {
        "object": "inputs absent: no readable deepCoadd_ref in the scope",
        "trim_object": "needs object, which is skipped",
        "dpdd_object": "needs trim_object, which is skipped",
        "dia_object": "inputs absent: no readable deepDiff_diaObject in the scope",
    }
    assert inventory_skips(["source"], report) == {}


def test_plan_leaves_out_skipped_products_and_keeps_the_reason(tmp_path) -> None:
    config = _config(tmp_path)
    skipped = {"dia_object": "inputs absent: no readable deepDiff_diaObject in the scope"}
    plan = plan_run(config, validate_params({}, config), skipped)
    assert plan.products == ("object", "trim_object", "dpdd_object", "source", "dia_source")
    assert RunPlan.from_dict(plan.to_dict()).skipped == skipped
    old = {k: v for k, v in plan.to_dict().items() if k != "skipped"}  # an XCom from before
    assert RunPlan.from_dict(old).skipped == {}


def test_inventory_command_scope_and_report_path(tmp_path) -> None:
    config = _config(tmp_path)
    plan = plan_run(config, validate_params({"tracts": [4850]}, config))
    assert inventory_command(config, plan, ["shifter", "dc2"]) == [
        "shifter", "dc2", "inventory", "/repo", "--rerun", "multiband",
        "--products", "object", "source", "dia_source", "dia_object", "--json",
        "--tracts", "4850", "--visits", "100", "101", "--bands", "gri", "-o", f"/work/{INVENTORY_FILE}",
    ]
    dry = plan_run(config, validate_params({"dry_run": True, "products": ["trim_object"]}, config))
    assert inventory_command(config, dry) is None
    manifest = next(c for c in finalize_commands(config, plan, "object") if c.what == "manifest")
    assert manifest.argv[manifest.argv.index("--inventory") + 1] == f"/work/{INVENTORY_FILE}"

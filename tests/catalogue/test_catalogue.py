"""The product catalogue: its own rules, and that one entry is all a new product needs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dc2tasks.catalogue import CATALOGUE, Catalogue

HERE = Path(__file__).resolve().parent
DEMO_RUN = HERE.parents[1] / "dags" / "runs" / "demo.yaml"


def test_every_file_pattern_matches_its_own_files_and_no_other_products() -> None:
    names = {p.name: p.file_name(tract=4850, visit=230, run="run1.2i") for p in CATALOGUE}
    for p in CATALOGUE:
        matched = {n for n, f in names.items() if re.match(p.file_pattern, f)}
        assert matched == {p.name}, (p.name, matched)


def test_needs_and_uses_name_earlier_products_and_steps_are_unique() -> None:
    dia = CATALOGUE["dia_object"]
    with pytest.raises(ValueError, match="needs 'dia_object', which is not declared before it"):
        Catalogue((dataclasses.replace(dia, name="early", step="early", needs=("dia_object",)), dia))
    obj = CATALOGUE["object"]
    with pytest.raises(ValueError, match="product 'object' declared twice"):
        Catalogue((obj, obj))
    with pytest.raises(ValueError, match="a step makes two products"):
        Catalogue((obj, dataclasses.replace(obj, name="other")))


def test_task_ids_and_arrays_follow_group_and_unit() -> None:
    assert [p.task_id for p in CATALOGUE] == [
        "object.merge_tract", "object.trim", "object.dpdd", "object.merge_parquet",
        "source", "forced_source", "dia_source", "dia_object",
    ]
    assert {p.name: p.job_array for p in CATALOGUE} == {
        "object": "tract", "trim_object": "tract", "dpdd_object": "tract", "merged_dpdd_object": None,
        "source": "visit", "forced_source": "visit", "dia_source": "visit", "dia_object": None,
    }
    assert CATALOGUE.directories(["source", "trim_object", "object"]) == ["object", "source"]


def test_an_extra_product_is_one_entry(tmp_path) -> None:
    """A product registered in a temporary catalogue (in a fresh interpreter) appears in run-file
    validation, the DAG with its edges, its job script, finalize's configs and the CLI."""
    env = dict(os.environ, DC2_DEMO_DIR=str(tmp_path))
    (tmp_path / "sample-repo").mkdir()
    (tmp_path / "sample-repo" / "visits.txt").write_text("4950000\n")
    r = subprocess.run(
        [sys.executable, str(HERE / "extra_product.py"), str(DEMO_RUN), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=HERE, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.splitlines()[-1])
    assert seen["products"][-1] == "star_counts"
    assert "star_counts is made from dpdd_object; add dpdd_object to products" in seen["refused"]
    assert seen["upstream"] == ["object.dpdd"]
    assert seen["downstream"] == ["finalize"]
    work = tmp_path / "work"
    assert seen["script"].splitlines()[-1] == (
        f"dc2 star-counts {tmp_path}/sample-repo --rerun multiband --objects {work}/dpdd_object "
        f"-o {work}/star_counts --tract 4850"
    )
    assert seen["directories"][-1] == "star_counts"
    config = seen["configs"]["dc2_star_counts_demo"]
    assert config["filename_pattern"] == r"star_counts_tract_\d+\.parquet$"
    assert config["subclass_name"] == "dc2_object.DC2ObjectParquetCatalog"
    assert config["description"] == "DC2 demo: star counts per tract"
    gcr_config, manifest = seen["finalize"]
    assert gcr_config[gcr_config.index("--product") + 1] == "star_counts"
    assert f"{work}/gcr-catalogs/dc2_star_counts_demo.yaml" in manifest
    assert seen["cli"]["help"] == "Star counts per tract, from the DPDD Object table"
    assert seen["cli"]["parsed"] == ["star-counts", "repo", "o", "out", 0]
    assert "star_counts" in seen["cli"]["gcr_products"]


def test_the_readme_table_is_the_catalogue() -> None:
    from dc2tasks.catalogue import markdown_table

    readme = (HERE.parents[1] / "README.md").read_text()
    shown = readme.split("<!-- products:begin -->\n")[1].split("<!-- products:end -->")[0]
    assert shown == markdown_table(), "README.md: paste the output of `python -m dc2tasks.catalogue`"

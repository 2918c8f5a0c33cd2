"""QA of Source, ForcedSource, DIASource and DIAObject on a sample repository run through the visit
products: every check passes and every plot is drawn; each fault, written into a copy of a product
file with pyarrow, is reported by the check's name with its numbers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.inventory import take_inventory
from dc2tasks.products.object_pipeline import run_object_pipeline
from dc2tasks.products.qa import visits as qa_visits
from dc2tasks.products.qa.core import CheckResult, QaInputs, QaReport, Thresholds, write_qa_json
from dc2tasks.products.qa.references import VISIT_TRUTH_FILES
from dc2tasks.products.qa.visit_scan import Footprint, sky_cells
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.visit_pipeline import run_visit_pipeline
from dc2tasks.sample import SampleConfig, make_sample_repo
from dc2tasks.sample.visit_truth import visit_truth_path

CENTRE = tuple(f"{x},{y}" for x in (2, 3, 4) for y in (2, 3, 4))
PRODUCTS = ("source", "forced_source", "dia_source", "dia_object")
COMMON = {
    "rows_vs_inputs",
    "units_present",
    "ids_unique",
    "columns_not_all_nan",
    "columns_not_constant",
    "one_schema",
    "magnitudes_in_range",
}
MATCHED = {"matched_fraction", "match_distance_within_radius", "truth_position_offset"}
CHECKS = {
    "source": COMMON | MATCHED | {"truth_mag_offset"},
    "forced_source": COMMON | {"truth_mag_offset"},
    "dia_source": COMMON | MATCHED | {"truth_mag_offset"},
    "dia_object": COMMON | {"nobs_consistent"},
}
PLOTS = {
    "source": {"mag_err_vs_mag", "matched_fraction", "match_distance", "truth_residuals"},
    "forced_source": {"mag_err_vs_mag", "truth_residuals"},
    "dia_source": {"mag_err_vs_mag", "matched_fraction", "match_distance", "truth_residuals"},
    "dia_object": {"mag_err_vs_mag", "nobs", "variability"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[object, Path, dict]:
    """(sample, work dir, inventory report): two bands, three visits each, so each band's light-curve
    statistics are defined."""
    root = tmp_path_factory.mktemp("qa_visits")
    config = SampleConfig(patches=CENTRE, objects_per_patch=120, visits=6, bands=("g", "r"))
    sample = make_sample_repo(root / "repo", config)
    repo = Gen2Repo.open(sample.root, sample.rerun)
    run_object_pipeline(repo, root / "work", run="test")
    run_visit_pipeline(repo, root / "work", run="test", products=PRODUCTS)
    inventory = json.loads(json.dumps(take_inventory(repo, PRODUCTS)))  # as `dc2 inventory` writes it
    return sample, root / "work", inventory


def _qa(run, product: str, tmp_path: Path, work: Path | None = None, **kw) -> QaReport:
    sample, made, inventory = run
    options = {"inventory": inventory, "truth": sample.root / "truth", **kw}
    directory = (work or made) / CATALOGUE[product].directory
    inputs = QaInputs(CATALOGUE[product], directory, tmp_path / "qa" / product, Thresholds(), **options)
    qa = getattr(qa_visits, CATALOGUE[product].qa.split(":")[1])
    return qa(inputs)


def _check(report: QaReport, name: str):
    [found] = [c for c in report.checks if c.name == name]
    return found


def _copy(run, tmp_path: Path, *products: str) -> Path:
    """A work directory holding copies of these products' files, to damage."""
    made = run[1]
    for p in products:
        shutil.copytree(made / CATALOGUE[p].directory, tmp_path / "work" / CATALOGUE[p].directory)
    return tmp_path / "work"


def _files(work: Path, product: str) -> list[Path]:
    return sorted((work / CATALOGUE[product].directory).glob("*.parquet"))


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table).replace_schema_metadata(table.schema.metadata), path)


def _unit(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _fault(
    run, tmp_path: Path, product: str, check: str, change: Callable[[pa.Table], pa.Table], index: int = 0
) -> tuple[CheckResult, int]:
    """The named check on a copy of the product whose `index`-th file `change` rewrote, and that
    file's visit or tract."""
    work = _copy(run, tmp_path, product)
    path = _files(work, product)[index]
    _rewrite(path, change)
    return _check(_qa(run, product, tmp_path, work), check), _unit(path)


def _set(name: str, values: Callable[[np.ndarray], np.ndarray]) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        i = table.schema.get_field_index(name)
        column = table.column(name)
        return table.set_column(i, name, pa.array(values(column.to_numpy().copy()), type=column.type))

    return change


# ---- a good run ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
def test_every_check_passes_and_every_plot_is_drawn(run, product, tmp_path) -> None:
    report = _qa(run, product, tmp_path)
    assert {c.name for c in report.checks} == CHECKS[product]
    assert [c for c in report.checks if c.verdict != "pass"] == []
    assert report.verdict == "pass"
    assert {p.name for p in report.plots} == PLOTS[product]
    for plot in report.plots:
        assert plot.file == f"plots/{plot.name}.png"
        image = matplotlib.image.imread(tmp_path / "qa" / product / plot.file)
        assert image.shape[0] >= 300 and image.shape[1] >= 400, plot.name
        assert float(image[..., :3].std()) > 0.01, f"{plot.name} is blank"
    assert report.facts["rows"] > 0
    write_qa_json(report, tmp_path)  # every fact and value is JSON
    assert json.loads((tmp_path / "qa.json").read_text())["verdict"] == "pass"


def test_good_run_numbers(run, tmp_path) -> None:
    sample, _, _ = run
    report = _qa(run, "source", tmp_path)
    assert report.facts["visits"] == sample.visit_ids()
    assert report.facts["bands"] == ["g", "r"]
    assert report.facts["rows"] == sample.visit_rows["src"]
    assert report.facts["match_radius_arcsec"] == 1.0
    assert _check(report, "truth_mag_offset").value == 0.0
    assert 0.5 < _check(report, "matched_fraction").value <= 1.0
    objects = _qa(run, "dia_object", tmp_path)
    assert objects.facts["bands"] == ["g", "r"]
    curves = objects.facts["light_curves"]
    assert set(curves) == {"g", "r"} and min(curves.values()) > 10


def test_source_matched_fraction_counts_rows_inside_the_object_footprint(run, tmp_path) -> None:
    inside = _qa(run, "source", tmp_path)
    assert "dpdd_object footprint" in inside.facts["matched_fraction_of"]
    work = _copy(run, tmp_path, "source")  # no dpdd_object beside it: every row counts
    everywhere = _qa(run, "source", tmp_path, work)
    assert everywhere.facts["matched_fraction_of"].startswith("every row (")
    assert _check(everywhere, "matched_fraction").value < _check(inside, "matched_fraction").value
    assert _qa(run, "dia_source", tmp_path).facts["matched_fraction_of"] == "every row"


def test_footprint_cells() -> None:
    # the first two 4 arcsec apart inside one 30 arcsec cell, the third 30 arcsec south of the first
    ra, dec = np.array([10.0, 10.0005, 10.0, 200.0]), np.array([-30.004, -30.003, -30.0123, 45.0])
    footprint = Footprint.of(iter([(ra[:1], dec[:1])]))
    assert footprint.covers(ra, dec).tolist() == [True, True, False, False]
    assert len(set(sky_cells(np.array([0.0, 0.0, 0.01]), np.array([0.0, 0.01, 0.0])).tolist())) == 3


def test_without_inventory_or_truth_those_checks_are_left_out_and_said(run, tmp_path) -> None:
    report = _qa(run, "source", tmp_path, inventory=None, truth=None)
    names = {c.name for c in report.checks}
    assert not names & {"rows_vs_inputs", "units_present", "truth_mag_offset", "truth_position_offset"}
    assert "no inventory" in report.facts["inputs"]
    assert "not given" in report.facts["planned"] and "not given" in report.facts["truth"]
    assert "truth_residuals" not in {p.name for p in report.plots}
    assert report.verdict == "pass"


def test_truth_file_names_are_the_samples(run) -> None:
    sample, _, _ = run
    visit = sample.visit_ids()[0]
    for product, kind in (("source", "source"), ("forced_source", "forced"), ("dia_source", "dia_source")):
        name = VISIT_TRUTH_FILES[product].format(visit=visit)
        assert visit_truth_path(sample.root, kind, visit) == sample.root / "truth" / name
        assert sample.visit_truth(kind, visit).name == name


# ---- faults ---------------------------------------------------------------------------------------------


def test_all_nan_column_is_named_per_band(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "source")
    for f in _files(work, "source"):
        _rewrite(f, _set("slot_ApFlux_instFlux", lambda v: np.full(len(v), np.nan)))
    check = _check(_qa(run, "source", tmp_path, work), "columns_not_all_nan")
    assert (check.verdict, check.value) == ("fail", 2)
    assert check.detail == "2 float columns all NaN: slot_ApFlux_instFlux (g), slot_ApFlux_instFlux (r)"


def test_constant_column_is_named(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "forced_source")
    for f in _files(work, "forced_source"):
        _rewrite(f, _set("mag_err", lambda v: np.full(len(v), 0.25)))
    check = _check(_qa(run, "forced_source", tmp_path, work), "columns_not_constant")
    assert (check.verdict, check.value) == ("fail", 2)
    assert check.detail == "2 float columns constant: mag_err (g) (= 0.25), mag_err (r) (= 0.25)"


def test_duplicated_source_id(run, tmp_path) -> None:
    first = pq.read_table(_files(run[1], "source")[1], columns=["id"]).column("id")[0].as_py()
    check, visit = _fault(
        run, tmp_path, "source", "ids_unique", _set("id", lambda v: np.concatenate([v[:1], v[:1], v[2:]])), 1
    )
    assert (check.verdict, check.value, check.threshold) == ("fail", 2, "<= 0 (max_duplicate_ids)")
    assert check.detail == f"2 rows share their id within a visit: visit {visit}: {first} (2 rows)"


def test_dropped_visit_file_is_named_missing(run, tmp_path) -> None:
    sample = run[0]
    work = _copy(run, tmp_path, "dia_source")
    dropped = sample.visit_ids()[2]
    (work / "dia_source" / CATALOGUE["dia_source"].file_name(visit=dropped)).unlink()
    report = _qa(run, "dia_source", tmp_path, work)  # the plan: the inventory's repository's visits
    check = _check(report, "units_present")
    assert (check.verdict, check.value) == ("fail", 1)
    assert check.detail == f"1 planned units absent: visit {dropped}"
    given = _check(
        _qa(run, "dia_source", tmp_path, work, inventory=None, visits=tuple(sample.visit_ids())),
        "units_present",
    )
    assert (given.verdict, given.value, given.detail) == ("fail", 1, check.detail)


def test_file_with_one_column_of_another_dtype(run, tmp_path) -> None:
    def narrower(t: pa.Table) -> pa.Table:
        return t.set_column(
            t.schema.get_field_index("mag_err"), "mag_err", t.column("mag_err").cast(pa.float32())
        )

    check, visit = _fault(run, tmp_path, "source", "one_schema", narrower, 3)
    assert (check.verdict, check.value) == ("fail", 1)
    first = _unit(_files(run[1], "source")[0])
    assert check.detail == (
        f"1 schema problems: visit {visit}: its columns differ from visit {first}'s "
        "(types mag_err (float, not double)): remake it from the same schema as the others"
    )


def test_file_without_a_declared_column_is_named_not_read(run, tmp_path) -> None:
    check, visit = _fault(
        run, tmp_path, "dia_source", "one_schema", lambda t: t.drop_columns(["fluxmag0"]), 2
    )
    assert (check.verdict, check.value) == ("fail", 2)
    first = _unit(_files(run[1], "dia_source")[0])
    assert check.detail == (
        f"2 schema problems: visit {visit}: its columns differ from visit {first}'s (lacks fluxmag0): "
        f"remake it from the same schema as the others, "
        f"visit {visit}: not the declared columns (lacks fluxmag0; has -)"
    )


def test_source_row_matched_beyond_the_radius(run, tmp_path) -> None:
    ids = pq.read_table(_files(run[1], "source")[0], columns=["objectId"]).column("objectId").to_numpy()
    matched = int(np.flatnonzero(ids >= 0)[0])

    def beyond(d: np.ndarray) -> np.ndarray:
        d[matched] = 1.25
        return d

    check, _ = _fault(run, tmp_path, "source", "match_distance_within_radius", _set("match_distance", beyond))
    assert (check.verdict, check.value) == ("fail", 1)
    assert check.detail == "1 matched rows beyond the 1 arcsec radius; worst 1.25 arcsec"


def test_a_visit_that_matched_nothing(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "source", "dpdd_object")
    path = _files(work, "source")[4]
    _rewrite(path, _set("objectId", lambda v: np.full(len(v), -1)))
    check = _check(_qa(run, "source", tmp_path, work), "matched_fraction")
    assert (check.verdict, check.value, check.threshold) == ("fail", 0.0, ">= 0.5 (min_matched_fraction)")
    assert check.detail.startswith(f"lowest: visit {_unit(path)}; ")


def test_dia_object_nobs_off_by_one(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "dia_object", "dia_source")
    path = _files(work, "dia_object")[0]
    table = pq.read_table(path, columns=["diaObjectId", "nobs"])
    first, nobs = table.column("diaObjectId")[0].as_py(), table.column("nobs")[0].as_py()
    _rewrite(path, _set("nobs", lambda v: np.concatenate([v[:1] + 1, v[1:]])))
    check = _check(_qa(run, "dia_object", tmp_path, work), "nobs_consistent")
    assert (check.verdict, check.value) == ("fail", 1)
    assert check.detail == f"diaObjectId {first}: nobs {nobs + 1}, {nobs} DIASources"


def test_dia_object_band_ndata_off_by_one(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "dia_object", "dia_source")
    path = _files(work, "dia_object")[0]
    table = pq.read_table(path, columns=["diaObjectId", "psFluxNdata_r"])
    some = int(np.flatnonzero(table.column("psFluxNdata_r").to_numpy() > 0)[0])
    oid, ndata = table.column("diaObjectId")[some].as_py(), table.column("psFluxNdata_r")[some].as_py()

    def less(v: np.ndarray) -> np.ndarray:
        v[some] -= 1
        return v

    _rewrite(path, _set("psFluxNdata_r", less))
    check = _check(_qa(run, "dia_object", tmp_path, work), "nobs_consistent")
    assert (check.verdict, check.value) == ("fail", 1)
    assert check.detail == f"diaObjectId {oid}: psFluxNdata_r {ndata - 1}, {ndata} r DIASources"


def test_dia_object_without_its_dia_sources_says_so(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "dia_object")
    report = _qa(run, "dia_object", tmp_path, work)
    assert "nobs_consistent" not in {c.name for c in report.checks}
    assert "not checked" in report.facts["dia_source"]


def test_a_row_lost_against_the_inputs(run, tmp_path) -> None:
    rows = pq.read_metadata(_files(run[1], "forced_source")[0]).num_rows
    check, visit = _fault(
        run, tmp_path, "forced_source", "rows_vs_inputs", lambda t: t.slice(0, t.num_rows - 1)
    )
    assert (check.verdict, check.value) == ("fail", 1)
    units = len(_files(run[1], "forced_source"))
    assert check.detail == f"1 of {units} units differ: {visit}: {rows - 1} rows, inputs {rows}"


def test_zero_point_off_by_a_tenth_against_truth(run, tmp_path) -> None:
    work = _copy(run, tmp_path, "source")
    for f in _files(work, "source"):
        _rewrite(f, _set("fluxmag0", lambda v: v * 10 ** (0.1 / 2.5)))  # every magnitude 0.1 fainter
    report = _qa(run, "source", tmp_path, work)
    check = _check(report, "truth_mag_offset")
    assert check.verdict == "fail" and check.value == pytest.approx(0.1, abs=0.001)
    assert check.detail.startswith("g: +0.1000, r: +0.1000")
    assert _check(report, "magnitudes_in_range").verdict == "pass"


def test_truth_directory_without_the_visits_truth_fails(run, tmp_path) -> None:
    (tmp_path / "truth").mkdir()
    check = _check(_qa(run, "forced_source", tmp_path, truth=tmp_path / "truth"), "truth_mag_offset")
    visits = ", ".join(map(str, run[0].visit_ids()))
    assert (check.verdict, check.value) == ("fail", None)
    assert check.detail == f"no row has a truth; no truth for visits {visits}"


def test_matched_fraction_thresholds_fail_and_warn(run, tmp_path) -> None:
    sample, made, inventory = run
    for values, verdict in (
        ({"min_matched_fraction": 0.999}, "fail"),
        ({"warn_matched_fraction": 0.999}, "warn"),
    ):
        inputs = QaInputs(
            CATALOGUE["source"],
            made / "source",
            tmp_path / "qa",
            Thresholds.from_mapping(values),
            inventory,
            sample.root / "truth",
        )
        report = qa_visits.source_qa(inputs)
        assert _check(report, "matched_fraction").verdict == verdict
        assert report.verdict == verdict


def test_implausible_magnitudes(run, tmp_path) -> None:
    _, made, inventory = run
    inputs = QaInputs(
        CATALOGUE["dia_source"],
        made / "dia_source",
        tmp_path / "qa",
        Thresholds.from_mapping({"mag_max": 15.0}),
        inventory,
    )
    check = _check(qa_visits.dia_source_qa(inputs), "magnitudes_in_range")
    assert check.verdict == "fail" and check.value > 0.5
    assert check.threshold == "<= 0.01 (max_mag_outside_fraction)" and "outside [10, 15]" in check.detail

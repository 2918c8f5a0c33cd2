"""The per-visit product declarations against GCRCatalogs' own readers, and the small pieces around
them (visit lists, dates, detector numbers, data-id discovery) that need no sample repository."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from dc2tasks.products.errors import InputError
from dc2tasks.products.gcr import PRODUCTS
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.schema import SchemaGeneration
from dc2tasks.products.visit_info import detector_number, mjd_from_iso, mjd_of
from dc2tasks.products.visit_lists import read_visit_file, select_visits
from dc2tasks.products.visit_tables import VISIT_TABLES

READERS = {
    "source": ("GCRCatalogs.dc2_source", "DC2SourceCatalog"),
    "forced_source": ("GCRCatalogs.dc2_forced_source", "DC2ForcedSourceCatalog"),
    "dia_source": ("GCRCatalogs.dc2_dia_source", "DC2DiaSourceCatalog"),
}


def reader_natives(key: str, version: int) -> set[str]:
    module, cls = READERS[key]
    modifiers = getattr(importlib.import_module(module), cls)._generate_modifiers(dm_schema_version=version)
    natives: set[str] = set()
    for name, mod in modifiers.items():
        if mod is None:
            natives.add(name)
        elif isinstance(mod, str):
            natives.add(mod)
        else:
            natives.update(mod[1:])
    return natives


# no DIA products exist before dm_schema_version 3
CASES = [(k, v) for k in sorted(READERS) for v in (1, 2, 3, 4) if not (k == "dia_source" and v < 3)]


@pytest.mark.parametrize(("key", "version"), CASES)
def test_our_columns_hold_every_native_the_reader_needs(key: str, version: int) -> None:
    ours = set(VISIT_TABLES[key].columns(SchemaGeneration(version)))
    needed = reader_natives(key, version)
    if key == "source" and version == 4:
        # the reader has no v4 branch for blendedness (spec §2.4): v4 catalogs call it base_Blendedness_abs
        needed.discard("base_Blendedness_abs_instFlux")
        assert "base_Blendedness_abs" in ours
    assert needed - ours == set()


def test_source_has_the_42_columns_of_the_spec_plus_ours() -> None:
    cols = VISIT_TABLES["source"].columns(SchemaGeneration(3))
    assert len(cols) == len(set(cols))
    assert len(set(cols) - {"mjd", "match_distance", "match_candidates"}) == 42
    assert cols[:5] == ["id", "parent", "objectId", "match_distance", "match_candidates"]


def test_forced_source_has_the_17_columns_of_the_spec_plus_mjd() -> None:
    cols = VISIT_TABLES["forced_source"].columns(SchemaGeneration(3))
    assert len(cols) == len(set(cols))
    assert set(cols) - {"mjd"} == reader_natives("forced_source", 3)
    assert len(set(cols) - {"mjd"}) == 17


def test_dia_source_has_the_42_columns_of_the_spec_plus_match_columns() -> None:
    cols = set(VISIT_TABLES["dia_source"].columns(SchemaGeneration(3)))
    assert len(cols - {"match_distance", "match_candidates"}) == 42


def test_product_names_and_readers() -> None:
    assert PRODUCTS["source"].catalog_name("Run1.2i") == "dc2_source_run1.2i"
    assert PRODUCTS["dia_object"].catalog_name("run1.2p") == "dc2_dia_object_run1.2p"
    assert PRODUCTS["forced_source"].file_pattern == r"forced_src_visit_\d+\.parquet$"
    assert PRODUCTS["dia_source"].file_pattern == r"dia_src_visit_\d+\.parquet$"
    assert PRODUCTS["dia_object"].file_pattern == r"dia_object_tract_\d+\.parquet$"
    assert VISIT_TABLES["source"].file_name(230) == "src_visit_230.parquet"


# ---- visit lists --------------------------------------------------------------------------------


def test_visit_file_union_order_and_stripes(tmp_path: Path) -> None:
    f = tmp_path / "visits.txt"
    f.write_text("# run 1.2 visits\n230\n\n1931758  # last\n231\n230\n")
    assert read_visit_file(f) == [230, 1931758, 231, 230]
    assert select_visits([5, 231], f) == [5, 231, 230, 1931758]
    all_visits = list(range(1000, 1010))
    stripes = [select_visits(all_visits, None, i, 3) for i in range(3)]
    assert stripes == [all_visits[0::3], all_visits[1::3], all_visits[2::3]]
    assert sorted(v for s in stripes for v in s) == all_visits
    assert select_visits(all_visits, None, 12, 20) == []  # more stripes than visits: an idle element


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("230\nabc\n", "visits.txt:2: 'abc' is not a visit number"),
        ("-4\n", "visits.txt:1: visit -4 is negative"),
    ],
)
def test_bad_visit_file_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "visits.txt"
    f.write_text(text)
    with pytest.raises(InputError, match=message):
        read_visit_file(f)


def test_bad_stripe_arguments() -> None:
    with pytest.raises(InputError, match=r"array index 3 is outside 0\.\.2"):
        select_visits([1, 2], None, 3, 3)
    with pytest.raises(InputError, match="needs both"):
        select_visits([1, 2], None, 1, None)
    with pytest.raises(InputError, match="no visits given"):
        select_visits([], None)


# ---- dates and detectors ------------------------------------------------------------------------


def test_mjd_keeps_nanoseconds_and_agrees_with_astropy() -> None:
    from astropy.time import Time

    text = "2022-10-01T03:12:45.123456789"
    ours = mjd_from_iso(text)
    theirs = Time(text, format="isot", scale="tai").mjd
    assert abs(ours - theirs) * 86400 < 1e-6
    assert mjd_from_iso("1858-11-17T00:00:00") == 0.0
    assert mjd_from_iso("2000-01-01T12:00:00") == 51544.5


def test_mjd_from_a_utc_header_is_converted_to_tai() -> None:
    header = {"DATE-AVG": "2020-01-01T00:00:00.000", "TIMESYS": "UTC"}
    assert (mjd_of(header) - 58849.0) * 86400 == pytest.approx(37.0, abs=1e-4)  # TAI - UTC in 2020
    assert np.isnan(mjd_of({}))
    with pytest.raises(InputError, match="not an ISO 8601 date"):
        mjd_of({"DATE-AVG": "yesterday"})


@pytest.mark.parametrize(
    ("data_id", "number"),
    [
        ({"detector": 94, "raftName": "R22", "detectorName": "S11"}, 94),
        ({"raftName": "R22", "detectorName": "S11"}, 94),
        ({"raft": "2,2", "sensor": "1,1"}, 94),
        ({"raft": "0,1", "sensor": "0,0"}, 0),
        ({"raft": "4,3", "sensor": "2,2"}, 188),
        ({"raftName": "R10", "detectorName": "S02"}, 29),
    ],
)
def test_detector_numbers(data_id: dict, number: int) -> None:
    assert detector_number(data_id) == number


def test_corner_raft_is_not_a_science_detector() -> None:
    with pytest.raises(InputError, match="not on the LSST focal plane"):
        detector_number({"raft": "0,0", "sensor": "1,1"})


# ---- discovery ----------------------------------------------------------------------------------


def _touch(root: Path, rel: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def test_discover_reads_data_ids_back_and_child_hides_parent(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root).mkdir()
    (root / "_mapper").write_text("lsst.obs.lsst.imsim.ImsimMapper\n")
    child = root / "rerun" / "mine"
    child.mkdir(parents=True)
    (child / "repositoryCfg.yaml").write_text("_mapper: null\n_parents:\n- ../..\n")
    a = _touch(root, "src/00230000-r/R22/src_00230000-r-R22-S11-det094.fits")
    b = _touch(root, "src/00230000-r/R22/src_00230000-r-R22-S12-det095.fits")
    b2 = _touch(child, "src/00230000-r/R22/src_00230000-r-R22-S12-det095.fits")
    _touch(root, "src/00230001-r/R22/src_00230001-r-R22-S11-det094.fits")  # another visit
    _touch(root, "src/00230000-r/R22/src_00230001-r-R22-S10-det093.fits")  # misfiled: visit disagrees
    repo = Gen2Repo.open(root, "mine")
    found = repo.discover("src", visit=230000)
    assert [d for d, _ in found] == [
        {"visit": 230000, "filter": "r", "raftName": "R22", "detectorName": "S11", "detector": 94},
        {"visit": 230000, "filter": "r", "raftName": "R22", "detectorName": "S12", "detector": 95},
    ]
    assert [p for _, p in found] == [a.resolve(), b2.resolve()]
    assert b.exists()
    assert len(repo.discover("src")) == 3
    assert repo.discover("src", visit=999) == []

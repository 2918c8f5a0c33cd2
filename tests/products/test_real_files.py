"""Every FITS file the LSST stack wrote in ../shared/fixtures (real/ and afw/) read by our reader,
checked against astropy's reading of the same file: every HDU, header card, column and flag bit.

Astropy is the reference because it is an independent, complete FITS reader (in the lock for the
visit products' time scales); ours reads only what afw writes, fast.
"""

from __future__ import annotations

import gzip
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits as afits
from astropy.time import Time

from dc2tasks.products import afw, fits, gzip_stream
from dc2tasks.products.calib import NJY_AT_MAG0, read_calibration
from dc2tasks.products.errors import InputError
from dc2tasks.products.visit_info import read_exposure_info
from dc2tasks.sample import afw_writer

# (fixture directory, file): every FITS file there; test_every_fits_file_is_listed keeps it whole
FILES = [
    ("afw", "deepCoadd_meas_HSC_v2.fits"),
    ("afw", "photoCalib-version1.fits"),
    ("afw", "sourceCatalog-hsc-v2.fits"),
    ("real", "afw-photoCalib-noversion.fits"),
    ("real", "afw-photoCalib-version0.fits"),
    ("real", "afw-sourceTable-v1.fits"),
    ("real", "afw-sourceTable-v2.fits"),
    ("real", "afw-ticket42210.fits"),
    ("real", "calexp-hsc-obs_base.fits"),
    ("real", "lsstsim-src-v695833-e0-c000.xy.fits"),
    ("real", "obs_test-calexp/example-calexp.fits.gz"),
]
# the archived PhotoCalib of the HSC calexp, as obs_base's own test states it (nJy per count)
HSC_CALIBRATION_MEAN = 1.99409


@pytest.fixture
def fixture_dirs(afw_fixtures: Path, real_fixtures: Path) -> dict[str, Path]:
    return {"afw": afw_fixtures, "real": real_fixtures}


def test_every_fits_file_is_listed(fixture_dirs):
    found = {
        (kind, p.relative_to(root).as_posix())
        for kind, root in fixture_dirs.items()
        for p in root.rglob("*")
        if p.name.endswith((".fits", ".fits.gz"))
    }
    assert found == set(FILES)


def _astropy_cards(header: afits.Header) -> list[tuple[str, object]]:
    skip = {"", "COMMENT", "HISTORY", "CONTINUE"}
    return [(card.keyword, card.value) for card in header.cards if card.keyword not in skip]


def _assert_same_value(ours: object, theirs: object, what: str) -> None:
    if isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours), what
    else:
        assert ours == theirs and type(ours) is type(theirs), f"{what}: {ours!r} != {theirs!r}"


def _assert_flag_column(records: afw.RawRecords, table: afw.AfwTable, col, values, k: int) -> None:
    names, _, count = list(records.flag_groups())[k]
    bits = np.asarray(values, dtype=bool)
    bits = bits[:, None] if bits.ndim == 1 else bits
    assert bits.shape == (len(records), count) and count == len(names), col.name
    for j, name in enumerate(names):
        np.testing.assert_array_equal(table[name], bits[:, j], err_msg=f"flag {name}")


def _assert_column(ours: np.ndarray, values, col) -> None:
    fmt = col.format
    if "P" in fmt or "Q" in fmt:  # variable-length: one array per row
        assert len(ours) == len(values), col.name
        for i in range(len(values)):
            if fmt.endswith(")") and "A" in fmt.split("(")[0]:
                assert ours[i] == "".join(values[i]), f"{col.name}[{i}]"
            else:
                theirs = np.asarray(values[i])
                # astropy leaves TZERO off variable-length elements; the standard (and we) apply it
                if col.bzero is None:
                    assert ours[i].dtype == theirs.dtype.newbyteorder("="), col.name
                np.testing.assert_array_equal(ours[i], theirs, err_msg=f"{col.name}[{i}]")
    elif "A" in fmt:  # text: astropy gives each value without its trailing blanks
        assert list(ours) == [values[i] for i in range(len(values))], col.name
    else:
        theirs = np.asarray(values)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype.newbyteorder("="), col.name
        np.testing.assert_array_equal(ours, theirs, err_msg=col.name)


@pytest.mark.parametrize(("kind", "name"), FILES, ids=[n for _, n in FILES])
def test_every_hdu_card_column_and_flag_equals_astropy(fixture_dirs, kind, name):
    path = fixture_dirs[kind] / name
    hdus = fits.scan(path)
    with afits.open(path) as hdul:
        assert len(hdus) == len(hdul)
        tables = 0
        for hdu, theirs in zip(hdus, hdul, strict=True):
            ours_cards = [(k, v) for k, v in hdu.header.cards]
            their_cards = _astropy_cards(theirs.header)
            assert [k for k, _ in ours_cards] == [k for k, _ in their_cards], f"HDU {hdu.index} keywords"
            for (key, ours), (_, value) in zip(ours_cards, their_cards, strict=True):
                _assert_same_value(ours, value, f"HDU {hdu.index} {key}")
            if not isinstance(theirs, afits.BinTableHDU):
                continue
            tables += 1
            records = afw.RawRecords.from_hdu(path, hdu)
            table = records.to_table()
            assert len(records) == theirs.header["NAXIS2"]
            flag_columns = 0
            for col in theirs.columns:
                values = theirs.data[col.name]
                if col.format.endswith("X"):
                    _assert_flag_column(records, table, col, values, flag_columns)
                    flag_columns += 1
                else:
                    _assert_column(table[col.name], values, col)
        assert tables > 0


def test_gzip_file_reads_as_its_decompressed_copy(real_fixtures, tmp_path):
    gz = real_fixtures / "obs_test-calexp" / "example-calexp.fits.gz"
    plain = tmp_path / "example-calexp.fits"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    for ours, theirs in zip(fits.scan(gz), fits.scan(plain), strict=True):
        assert (ours.header.cards, ours.data_offset, ours.data_size) == (
            theirs.header.cards,
            theirs.data_offset,
            theirs.data_size,
        )
        assert ours.mark is not None and theirs.mark is None
        assert fits.read_data(gz, ours) == fits.read_data(plain, theirs)
    ours, theirs = read_calibration(gz), read_calibration(plain)
    assert (ours.fluxmag0, ours.fluxmag0_err, ours.era) == (theirs.fluxmag0, theirs.fluxmag0_err, theirs.era)


def test_gzip_catalog_in_two_members_across_chunks(afw_fixtures, tmp_path):
    """A catalog bigger than the stream's chunks, compressed as two gzip members (as `cat a.gz b.gz`
    makes): read whole and by name, the same as the uncompressed file; the gzip read holds the
    decompressed records once."""
    rng = np.random.default_rng(3)
    n = 300_000
    cols = {"id": np.arange(n, dtype=np.int64), "x": rng.normal(size=n), "y": rng.normal(size=n)}
    flags = {f"f{k}": rng.uniform(size=n) > 0.5 for k in range(9)}
    raw = afw_writer.primary_hdu_bytes() + afw_writer.table_hdu_bytes(cols, flags, {})
    plain, packed = tmp_path / "big.fits", tmp_path / "big.fits.gz"
    plain.write_bytes(raw)
    half = len(raw) // 2
    # and zero padding after the last member, which gzip tools ignore
    packed.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]) + bytes(512))
    assert packed.stat().st_size > 2 * gzip_stream.CHUNK
    ours, theirs = afw.read_table(packed), afw.read_table(plain)
    assert ours.columns.keys() == theirs.columns.keys()
    for name, values in theirs.columns.items():
        np.testing.assert_array_equal(ours[name], values, err_msg=name)
    np.testing.assert_array_equal(afw.RawRecords.open(packed).column("f3"), flags["f3"])
    tracemalloc.start()
    try:
        records = afw.RawRecords.open(packed)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the records once, plus a few chunks in flight (decompressed blocks and their join, compressed
    # input and its unconsumed tail, the scan's marks): bounded, whatever the file's size
    overhead = 4 * gzip_stream.OUT_CHUNK + 4 * gzip_stream.CHUNK
    assert records.rows.nbytes < peak < records.rows.nbytes + overhead < 1.3 * records.rows.nbytes


def test_gzip_calexp_fluxmag0_is_its_header(real_fixtures):
    path = real_fixtures / "obs_test-calexp" / "example-calexp.fits.gz"
    header = afits.getheader(path, 0)
    c = read_calibration(path)
    assert c.era == "calib"
    assert c.fluxmag0 == header["FLUXMAG0"] and c.fluxmag0_err == header["FLUXMAG0ERR"]
    info = read_exposure_info(path)
    assert info.calibration == c


def test_hsc_calexp_calibration(real_fixtures):
    """The archived PhotoCalib of a real HSC calexp: calibrationMean 1.99409 nJy/count, so
    instFluxAtZeroMagnitude = referenceFlux / 1.99409, where afw's referenceFlux (lsst.utils
    Magnitude.h) is the AB zero point 10**(48.6/2.5) * 1e-23 erg/s/cm2/Hz = 10**12.56 nJy, the
    3631 Jy of the AB system before rounding (3631e9 / 1.99409 is the same within 6.1e-5)."""
    path = real_fixtures / "calexp-hsc-obs_base.fits"
    c = read_calibration(path)
    assert c.era == "photocalib"
    assert c.calibration_mean == pytest.approx(HSC_CALIBRATION_MEAN, rel=1e-5)
    assert NJY_AT_MAG0 == pytest.approx(1e23 * 10 ** (-48.6 / 2.5) * 1e9, rel=1e-15)
    assert c.fluxmag0 == pytest.approx(NJY_AT_MAG0 / HSC_CALIBRATION_MEAN, rel=1e-5)
    assert c.fluxmag0 == pytest.approx(3631e9 / HSC_CALIBRATION_MEAN, rel=6.1e-5)
    info = read_exposure_info(path)
    assert info.calibration == c
    header = afits.getheader(path)
    assert header["TIMESYS"] == "TAI"
    assert info.mjd == pytest.approx(Time(header["DATE-AVG"], scale="tai").mjd, abs=1e-9)


def test_old_photocalibs_without_and_with_version_0(real_fixtures):
    for name in ("afw-photoCalib-noversion.fits", "afw-photoCalib-version0.fits"):
        path = real_fixtures / name
        with afits.open(path) as hdul:
            row = next(h for h in hdul if h.header.get("AR_NAME") == "PhotoCalib").data[0]
        c = read_calibration(path)
        assert c.era == "photocalib"
        assert c.calibration_mean == row["calibrationMean"]
        assert c.calibration_err == pytest.approx(row["calibrationErr"], rel=1e-12)


def test_lsstsim_src_is_read(real_fixtures):
    t = afw.read_table(real_fixtures / "lsstsim-src-v695833-e0-c000.xy.fits")
    assert len(t) == 337
    assert t["id"].dtype == np.int64 and len(np.unique(t["id"])) == 337
    assert np.isfinite(t["coord_ra"]).all() and np.isfinite(t["Centroid_x"]).all()
    # footprints inline, as variable-length arrays: heavyMask is uint16 (TZERO 32768)
    assert t["heavyMask"].dtype == object and all(a.dtype == np.uint16 for a in t["heavyMask"])


def test_source_tables_v1_and_v2_name_errors_their_way(real_fixtures):
    v1 = afw.read_table(real_fixtures / "afw-sourceTable-v1.fits")
    v2 = afw.read_table(real_fixtures / "afw-sourceTable-v2.fits")
    assert len(v1) == len(v2) == 3
    assert v1.version == 1 and v2.version == 2
    assert "a_fluxSigma" in v1 and "b_xSigma" in v1 and "a_fluxErr" not in v1
    assert "a_fluxErr" in v2 and "b_xErr" in v2 and "a_fluxSigma" not in v2
    # version 1 persisted the slots as aliases; they resolve to their measurements
    assert v1.aliases == {"slot_Centroid": "b", "slot_PsfFlux": "a", "slot_Shape": "c"}
    np.testing.assert_array_equal(v1["slot_PsfFlux_fluxSigma"], v1["a_fluxSigma"])


def test_empty_catalog_keeps_its_300_column_schema(real_fixtures):
    path = real_fixtures / "afw-ticket42210.fits"
    t = afw.read_table(path)
    header = afits.getheader(path, 1)
    assert len(t) == 0 and header["TFIELDS"] == 300
    fields = [header[f"TTYPE{i}"] for i in range(1, 301)]
    flags = len(t.flag_names)
    assert flags > 0
    assert len(t.columns) == 299 + flags  # 299 fields and the bits of the one `flags` column
    assert all(len(v) == 0 for v in t.columns.values())
    assert set(fields) - {"flags"} <= set(t.columns)
    assert set(afw.column_names(path)) == set(t.columns)
    records = afw.RawRecords.open(path)
    assert len(records) == 0 and records.column("id").shape == (0,)


def test_truncated_gzip_names_the_file(real_fixtures, tmp_path):
    whole = real_fixtures / "obs_test-calexp" / "example-calexp.fits.gz"
    data = whole.read_bytes()
    cut = tmp_path / "cut.fits.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.fits\.gz: truncated"):
        fits.scan(cut)
    # FLUXMAG0 is in the primary header: the calibration needs nothing past it
    assert read_calibration(cut).fluxmag0 == afits.getheader(whole)["FLUXMAG0"]
    cut.write_bytes(data[:400])
    with pytest.raises(InputError, match=r"cut\.fits\.gz: truncated gzip file"):
        read_calibration(cut)
    corrupt = tmp_path / "corrupt.fits.gz"
    corrupt.write_bytes(data[:200] + bytes(b ^ 0x55 for b in data[200:400]) + data[400:])
    with pytest.raises(InputError, match=r"corrupt\.fits\.gz: corrupt gzip data near decompressed byte"):
        fits.scan(corrupt)

"""The afw reader against files written by the LSST stack itself (../shared/fixtures/afw)."""

import numpy as np
import pytest

from dc2tasks.products import afw
from dc2tasks.products.calib import read_calibration
from dc2tasks.products.errors import InputError
from dc2tasks.products.schema import detect_schema_generation
from dc2tasks.sample import afw_writer


def test_coadd_meas_v1_names_flags_ids_and_radians(afw_fixtures):
    t = afw.read_table(afw_fixtures / "deepCoadd_meas_HSC_v2.fits")
    assert len(t) == 10
    assert len(t.flag_names) == 237
    assert t.flag_names[:2] == ["merge_footprint_i2", "merge_footprint_i"]
    assert t["id"].dtype == np.int64
    assert t["id"][0] == 43158601644118719 and t["id"][-1] == 43158601644118734
    assert t["coord_ra"][0] == pytest.approx(2.62362576, abs=1e-8)  # radians, as stored
    assert t["coord_dec"][0] == pytest.approx(0.04214855, abs=1e-8)
    assert int(t["detect_isPrimary"].sum()) == 6
    assert t["detect_isPrimary"].dtype == bool
    assert list(t["deblend_nChild"]) == [0, 0, 0, 0, 0, 6, 6, 0, 2, 11]
    # older field names: _flux / _fluxSigma and xSigma
    assert "base_PsfFlux_fluxSigma" in t and "base_SdssCentroid_xSigma" in t
    assert detect_schema_generation(t.columns).version == 1
    assert t.version == 1


def test_source_catalog_v2_names_and_flags(afw_fixtures):
    t = afw.read_table(afw_fixtures / "sourceCatalog-hsc-v2.fits")
    assert len(t) == 5 and len(t.flag_names) == 114
    assert list(t["id"]) == [1055054421295105 + i for i in range(5)]
    assert int(t["base_PixelFlags_flag_edge"].sum()) == 4
    assert bool(t["base_SdssCentroid_flag"].all())
    assert "base_SdssCentroid_xErr" in t and "base_PsfFlux_fluxErr" in t
    assert detect_schema_generation(t.columns).version == 2
    # slot aliases resolve to their targets, as afw's prefix aliases do
    assert t.resolve("slot_Centroid_x") == "base_SdssCentroid_x"
    np.testing.assert_array_equal(t["slot_Centroid_x"], t["base_SdssCentroid_x"])


def test_reader_equals_astropy_on_every_column(afw_fixtures):
    from astropy.io import fits as afits

    path = afw_fixtures / "deepCoadd_meas_HSC_v2.fits"
    ours = afw.read_table(path)
    with afits.open(path) as hdul:
        data = hdul[1].data
        for name in data.names:
            if name == "flags":
                bits = np.asarray(data["flags"])
                for k, flag in enumerate(ours.flag_names):
                    np.testing.assert_array_equal(bits[:, k], ours[flag], err_msg=flag)
            else:
                np.testing.assert_array_equal(np.asarray(data[name]), ours[name], err_msg=name)


def test_photocalib_archive(afw_fixtures):
    c = read_calibration(afw_fixtures / "photoCalib-version1.fits")
    assert c.era == "photocalib"
    assert c.calibration_mean == pytest.approx(123.0, rel=1e-15)
    assert c.calibration_err == pytest.approx(45.0, rel=1e-12)


def test_truncated_file_names_the_file(afw_fixtures, tmp_path):
    src = (afw_fixtures / "deepCoadd_meas_HSC_v2.fits").read_bytes()
    bad = tmp_path / "ref-cut.fits"
    bad.write_bytes(src[: 2880 * 3 + 100])
    with pytest.raises(InputError, match=r"ref-cut\.fits: truncated FITS file"):
        afw.read_table(bad)


def test_not_fits(tmp_path):
    bad = tmp_path / "x.fits"
    bad.write_bytes(b"hello" * 1000)
    with pytest.raises(InputError, match="not a FITS file"):
        afw.read_table(bad)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    cols = {
        "id": np.arange(5, dtype=np.int64) + 2**40,
        "coord_ra": rng.uniform(0, 6.28, 5),
        "x": rng.normal(size=5).astype(np.float32),
        "n": np.arange(5, dtype=np.int32),
    }
    flags = {f"f{k}": rng.uniform(size=5) > 0.5 for k in range(11)}
    path = tmp_path / "t.fits"
    table = afw_writer.table_hdu_bytes(cols, flags, {"slot_X": "x"})
    path.write_bytes(afw_writer.primary_hdu_bytes() + table)
    t = afw.read_table(path)
    for k, v in {**cols, **flags}.items():
        np.testing.assert_array_equal(t[k], v)
        assert t[k].dtype == np.asarray(v).dtype
    assert t.flag_names == list(flags)
    np.testing.assert_array_equal(t["slot_X"], cols["x"])

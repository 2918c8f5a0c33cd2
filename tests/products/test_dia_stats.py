"""dia_object_statistics against a plain per-object, per-band loop (spec §3) in exact arithmetic."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from dc2tasks.products.dia_stats import BANDS, STAT_COLUMNS, dia_object_statistics

RTOL = 1e-12


NO_ROWS = {"psFluxMean": np.nan, "psFluxMeanErr": np.nan, "psFluxSigma": np.nan, "psFluxChi2": np.nan,
           "psFluxNdata": 0}  # fmt: skip


def exact_stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) >= 2 else np.nan  # exact fractions, rounded once


def reference_dc2(flux: list[float], err: list[float]) -> dict[str, float]:
    """Spec §3 with pandas NaN-skipping, in exact rational arithmetic (floats convert exactly).

    Exact, because a float64 reference is itself off by ~1e-11 in chi2 when the scatter is 1e-5 of
    the flux: the rounded mean is then a sizeable fraction of every deviation.
    """
    if not flux:
        return NO_ROWS
    values = [f for f in flux if not math.isnan(f)]
    if not values:
        mean, chi2 = np.nan, 0.0  # every chi2 term is NaN, and pandas sums those to 0
    else:
        mean_q = sum(map(Fraction, values)) / len(values)
        mean = float(mean_q)
        terms = [((Fraction(f) - mean_q) / Fraction(e)) ** 2 for f, e in zip(flux, err, strict=True)
                 if not (math.isnan(f) or math.isnan(e))]  # fmt: skip
        chi2 = float(sum(terms))
    sigma = exact_stdev(values)
    return {"psFluxMean": mean, "psFluxMeanErr": sigma / math.sqrt(len(flux)), "psFluxSigma": sigma,
            "psFluxChi2": chi2, "psFluxNdata": len(flux)}  # fmt: skip


def reference_dm(flux: list[float], err: list[float]) -> dict[str, float]:
    """ap_association's definition, in exact rational arithmetic."""
    rows = [(f, e) for f, e in zip(flux, err, strict=True) if math.isfinite(f) and math.isfinite(e) and e > 0]
    if not rows:
        return NO_ROWS
    weights = [1 / Fraction(e) ** 2 for _, e in rows]
    weight_sum = sum(weights)
    mean_q = sum(w * Fraction(f) for w, (f, _) in zip(weights, rows, strict=True)) / weight_sum
    chi2 = sum(((Fraction(f) - mean_q) / Fraction(e)) ** 2 for f, e in rows)
    return {"psFluxMean": float(mean_q), "psFluxMeanErr": math.sqrt(1 / weight_sum),
            "psFluxSigma": exact_stdev([f for f, _ in rows]), "psFluxChi2": float(chi2),
            "psFluxNdata": len(rows)}  # fmt: skip


def reference_table(ids, band, flux, err, bands, definition) -> pd.DataFrame:
    compute = reference_dc2 if definition == "dc2" else reference_dm
    rows = {}
    for obj in sorted(set(ids.tolist()) - {-1}):
        row = {}
        for b in bands:
            sel = (ids == obj) & (band == b)
            for name, value in compute(flux[sel].tolist(), err[sel].tolist()).items():
                row[f"{name}_{b}"] = value
        rows[obj] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def light_curves(seed: int, n_objects: int = 400):
    """Random DIA light curves with every awkward case the definitions distinguish."""
    rng = np.random.default_rng(seed)
    ids, band, flux, err = [], [], [], []
    for k in range(n_objects):
        obj = 10**12 + 37 * k
        n = 1 if k % 7 == 0 else int(rng.integers(2, 30))  # single-epoch objects
        present = rng.choice(list(BANDS), size=int(rng.integers(1, 4)), replace=False)  # missing bands
        level = rng.choice([-3000.0, 500.0, 1e5]) * rng.uniform(0.5, 2.0)
        scatter = abs(level) * rng.choice([1e-5, 0.05])  # ~1e5 nJy with a tiny scatter, too
        ids += [obj] * n
        band += list(rng.choice(present, n))
        flux += list(level + rng.normal(0, scatter, n))
        err += list(np.abs(rng.normal(scatter, scatter / 3, n)) + 1e-3)
    ids, band, flux, err = np.array(ids), np.array(band), np.array(flux), np.array(err)
    nan_flux = rng.uniform(size=flux.size) < 0.1
    flux[nan_flux] = np.nan
    err[rng.uniform(size=err.size) < 0.1] = np.nan
    err[rng.uniform(size=err.size) < 0.02] = -1.0  # a non-positive error: dropped by "dm" only
    flux[(ids == 10**12 + 37 * 3)] = np.nan  # one object whose every flux is NaN
    unassociated = rng.uniform(size=ids.size) < 0.05
    ids[unassociated] = -1
    order = rng.permutation(ids.size)  # rows arrive in visit order, not grouped by object
    return ids[order], band[order], flux[order], err[order]


@pytest.mark.parametrize("definition", ["dc2", "dm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_statistics_equal_a_plain_loop(definition, seed):
    ids, band, flux, err = light_curves(seed)
    got = dia_object_statistics(ids, band, flux, err, definition=definition)
    present = [b for b in BANDS if b in set(band[ids != -1].tolist())]
    want = reference_table(ids, band, flux, err, present, definition)
    assert got.index.name == "diaObjectId" and got.index.dtype == np.int64
    np.testing.assert_array_equal(got.index.to_numpy(), want.index.to_numpy())
    assert list(got.columns) == [f"{s}_{b}" for b in present for s in STAT_COLUMNS]
    for column in got.columns:
        if column.startswith("psFluxNdata"):
            assert got[column].dtype == np.int64
            np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(dtype=np.int64))
        else:
            np.testing.assert_allclose(
                got[column].to_numpy(), want[column].to_numpy(dtype=float), rtol=RTOL, atol=0, err_msg=column
            )
    # the data must contain the cases the test is about
    ndata = got.filter(like="psFluxNdata").to_numpy()
    assert (ndata == 0).any() and (ndata == 1).any()
    assert np.isnan(got.filter(like="psFluxMean_").to_numpy()[ndata > 0]).any() or definition == "dm"


def test_dc2_definition_on_hand_computed_values():
    ids = np.array([5, 5, 5, 5, 9, 9, 9, -1])
    band = np.array(["r", "r", "r", "g", "r", "r", "g", "g"])
    flux = np.array([1.0, 3.0, np.nan, 7.0, np.nan, np.nan, 2.0, 100.0])
    err = np.array([1.0, 2.0, 1.0, 0.5, 1.0, 1.0, np.nan, 1.0])
    got = dia_object_statistics(ids, band, flux, err)
    assert list(got.columns) == [f"{s}_{b}" for b in "gr" for s in STAT_COLUMNS]
    r5 = got.loc[5].filter(like="_r")
    # mean 2 of (1, 3); sigma sqrt(2); Ndata 3 counts the NaN row; chi2 = 1 + 1/4, the NaN term skipped
    assert r5["psFluxMean_r"] == 2.0 and r5["psFluxNdata_r"] == 3 and r5["psFluxChi2_r"] == 1.25
    assert r5["psFluxSigma_r"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert r5["psFluxMeanErr_r"] == pytest.approx(math.sqrt(2) / math.sqrt(3), rel=1e-15)
    # one point: sigma and MeanErr NaN, chi2 0
    g5 = got.loc[5]
    assert g5["psFluxMean_g"] == 7.0 and g5["psFluxNdata_g"] == 1 and g5["psFluxChi2_g"] == 0.0
    assert np.isnan(g5["psFluxSigma_g"]) and np.isnan(g5["psFluxMeanErr_g"])
    # every flux NaN: mean NaN, Ndata still 2, chi2 0 (pandas sums an all-NaN column to 0)
    r9 = got.loc[9]
    assert np.isnan(r9["psFluxMean_r"]) and r9["psFluxNdata_r"] == 2 and r9["psFluxChi2_r"] == 0.0
    # NaN error: the term is skipped
    assert got.loc[9, "psFluxChi2_g"] == 0.0 and got.loc[9, "psFluxMean_g"] == 2.0
    assert got.index.tolist() == [5, 9]  # -1 rows ignored, their flux of 100 nowhere


def test_dm_definition_on_hand_computed_values():
    ids = np.array([4, 4, 4, 4, 4, 8])
    band = np.array(["i"] * 6)
    flux = np.array([10.0, 20.0, np.nan, 30.0, 40.0, np.inf])
    err = np.array([1.0, 2.0, 1.0, 0.0, np.nan, 1.0])
    got = dia_object_statistics(ids, band, flux, err, definition="dm")
    # usable rows: (10, 1) and (20, 2): w = 1, 1/4; mean = (10 + 5) / 1.25 = 12
    i4 = got.loc[4]
    assert i4["psFluxMean_i"] == pytest.approx(12.0, rel=1e-15)
    assert i4["psFluxMeanErr_i"] == pytest.approx(math.sqrt(1 / 1.25), rel=1e-15)
    assert i4["psFluxNdata_i"] == 2
    assert i4["psFluxSigma_i"] == pytest.approx(math.sqrt(50.0), rel=1e-15)
    assert i4["psFluxChi2_i"] == pytest.approx((10 - 12) ** 2 + ((20 - 12) / 2) ** 2, rel=1e-15)
    # an object with no usable row: Ndata 0, the rest NaN
    i8 = got.loc[8]
    assert i8["psFluxNdata_i"] == 0
    assert np.isnan(i8[["psFluxMean_i", "psFluxMeanErr_i", "psFluxSigma_i", "psFluxChi2_i"]].to_numpy()).all()


@pytest.mark.parametrize("definition", ["dc2", "dm"])
def test_large_fluxes_with_a_tiny_scatter_keep_their_digits(definition):
    """~1e5 nJy with a scatter of 1e-3: sum(f^2) - n mean^2 would lose every digit of the variance."""
    rng = np.random.default_rng(11)
    flux = 1.2345e5 + rng.normal(0, 1e-3, 200)
    ids = np.full(flux.size, 77)
    got = dia_object_statistics(
        ids, np.array(["z"] * flux.size), flux, np.full(flux.size, 1e-3), definition=definition
    )
    exact = statistics.stdev(flux.tolist())  # computed with exact fractions, rounded once
    assert got.loc[77, "psFluxSigma_z"] == pytest.approx(exact, rel=1e-12)
    exact_mean = float(sum(Fraction(x) for x in flux.tolist()) / flux.size)
    assert got.loc[77, "psFluxMean_z"] == pytest.approx(exact_mean, rel=1e-15)
    exact_chi2 = float(
        sum((Fraction(x) - Fraction(exact_mean)) ** 2 for x in flux.tolist()) / Fraction(1e-3) ** 2
    )
    assert got.loc[77, "psFluxChi2_z"] == pytest.approx(exact_chi2, rel=1e-12)


def test_bands_parameter_fixes_columns_and_fills_absent_bands():
    ids = np.array([3, 3, 2])
    got = dia_object_statistics(
        ids, np.array(["r", "r", "y"]), np.array([1.0, 2.0, 3.0]), np.ones(3), bands="ugrizy"
    )
    assert list(got.columns) == [f"{s}_{b}" for b in BANDS for s in STAT_COLUMNS]
    assert got.index.tolist() == [2, 3]
    assert got["psFluxNdata_u"].tolist() == [0, 0] and got["psFluxNdata_u"].dtype == np.int64
    assert np.isnan(
        got[["psFluxMean_u", "psFluxMeanErr_u", "psFluxSigma_u", "psFluxChi2_u"]].to_numpy()
    ).all()
    assert got["psFluxNdata_r"].tolist() == [0, 2] and got["psFluxMean_r"].iloc[1] == 1.5
    # a subset keeps objects that have rows only outside it (Ndata 0 there)
    only_r = dia_object_statistics(
        ids, np.array(["r", "r", "y"]), np.array([1.0, 2.0, 3.0]), np.ones(3), bands=["r"]
    )
    assert only_r.index.tolist() == [2, 3] and only_r["psFluxNdata_r"].tolist() == [0, 2]
    assert list(only_r.columns) == [f"{s}_r" for s in STAT_COLUMNS]


def test_empty_and_all_unassociated_inputs():
    got = dia_object_statistics(np.array([-1, -1]), np.array(["g", "r"]), np.ones(2), np.ones(2))
    assert got.shape == (0, 0) and got.index.name == "diaObjectId" and got.index.dtype == np.int64
    got = dia_object_statistics(np.array([], dtype=np.int64), np.array([], dtype=str), [], [], bands=["g"])
    assert got.shape == (0, 5) and got["psFluxNdata_g"].dtype == np.int64


def test_bad_arguments_name_the_parameter():
    one = (np.array([1]), np.array(["g"]), np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="definition must be one of"):
        dia_object_statistics(*one, definition="pandas")
    with pytest.raises(ValueError, match=r"bands: \['x'\] not in ugrizy"):
        dia_object_statistics(*one, bands=["g", "x"])
    with pytest.raises(ValueError, match="bands: repeated band"):
        dia_object_statistics(*one, bands=["g", "g"])
    with pytest.raises(ValueError, match=r"band: values outside ugrizy in 1 rows: \['HSC-G'\]"):
        dia_object_statistics(np.array([1, 2]), np.array(["g", "HSC-G"]), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="ps_flux has 2 rows but dia_object_id has 1"):
        dia_object_statistics(np.array([1]), np.array(["g"]), np.ones(2), np.ones(1))
    with pytest.raises(ValueError, match="dia_object_id must be integers"):
        dia_object_statistics(np.array([1.0]), np.array(["g"]), np.ones(1), np.ones(1))

"""`make demo`: a sample repository, the whole Object pipeline on it, and a check through GCRCatalogs.

What a new user runs first: it shows every product, where it is, and that the collaboration's own
reader loads it with values that agree with what the generator put in.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

log = logging.getLogger(__name__)


def load_with_gcr(config_path: Path, quantities: list[str]) -> dict[str, np.ndarray]:
    """Load a catalog through the real GCRCatalogs from our config file, offline."""
    import GCRCatalogs
    from GCRCatalogs import ConfigSource

    ConfigSource.set_config_source(dr=False)
    config = yaml.safe_load(config_path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog = GCRCatalogs.load_catalog_from_config_dict(config)
        return catalog.get_quantities(quantities)


def truth_check(sample, gcr_data: dict[str, np.ndarray], bands: list[str]) -> dict[str, float]:
    """Largest |our mag - truth mag| per band over primary objects with positive flux."""
    truth = pd.concat(pd.read_parquet(p) for p in sample.truth.values())
    truth = truth[truth["is_primary"]].set_index("objectId")
    ids = gcr_data["objectId"]
    out = {}
    for b in bands:
        t = truth.loc[ids, f"psf_flux_nJy_{b}"].to_numpy()
        ok = t > 0
        true_mag = -2.5 * np.log10(t[ok]) + 31.4
        out[b] = float(np.nanmax(np.abs(gcr_data[f"mag_{b}"][ok] - true_mag))) if ok.any() else float("nan")
    return out


def run_demo(workdir: str | Path, seed: int = 2018, jobs: int = 2) -> int:
    from dc2tasks.products.object_pipeline import run_object_pipeline
    from dc2tasks.products.repo import Gen2Repo
    from dc2tasks.sample import SampleConfig, make_sample_repo

    workdir = Path(workdir).resolve()
    repo_dir = workdir / "sample-repo"
    if repo_dir.exists():
        shutil.rmtree(repo_dir)  # ours: regenerated from the seed every time
    start = time.perf_counter()
    config = SampleConfig(seed=seed, patches=["0,0", "0,1", "1,0", "1,1"], objects_per_patch=2000)
    sample = make_sample_repo(repo_dir, config)
    made = time.perf_counter() - start
    print(f"Sample repository: {sample.root} (rerun {sample.rerun}), made in {made:.1f} s")

    repo = Gen2Repo.open(sample.root, sample.rerun)
    result = run_object_pipeline(repo, workdir / "products", run="demo", jobs=jobs)
    from dc2tasks.cli import _print_products

    _print_products(result)

    bands = list(sample.bands)
    quantities = ["objectId", "ra", "dec", "tract", "patch", "good", *(f"mag_{b}" for b in bands)]
    data = load_with_gcr(result.configs["trim_object"], quantities)
    dpdd = load_with_gcr(result.configs["dpdd_object"], ["objectId"])
    worst = truth_check(sample, data, bands)
    n = len(data["objectId"])
    print(
        f"GCRCatalogs loads {n} objects from the trimmed HDF5 and {len(dpdd['objectId'])} from the DPDD "
        f"Parquet; {int(np.sum(data['good']))} are 'good'; "
        f"RA {data['ra'].min():.3f}..{data['ra'].max():.3f}, "
        f"Dec {data['dec'].min():.3f}..{data['dec'].max():.3f} deg."
    )
    print("Largest |mag - truth| per band: " + ", ".join(f"{b} {v:.2e}" for b, v in worst.items()))
    ok = n == len(dpdd["objectId"]) and all(v < 1e-9 for v in worst.values() if v == v)
    print("Demo " + ("succeeded." if ok else "FAILED: the catalogs disagree with the truth table."))
    return 0 if ok else 1

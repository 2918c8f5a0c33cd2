"""`make demo`: a sample repository, the `demo` data run through real Airflow, and a check of what it
installed through GCRCatalogs.

What a new user runs first. It shows the service as it runs at NERSC, on one machine: Airflow with a
SQLite database runs the `dc2_demo` DAG (dags/dc2_demo.py, dags/runs/demo.yaml) with the local job
backend, every product is made, installed into a local central directory, and loaded back by the
collaboration's own reader from there, with values checked against the generator's truth.
`--no-airflow` runs the same product steps in this process instead (no install), in seconds.
Before anything is loaded, every HDF5 file the catalogs serve is scanned for pickles as `dc2 install`
scans them (dc2tasks.products.hdf5_safety), and the demo says so: our own files must pass.
AIRFLOW_HOME (<workdir>/airflow, shared with `dc2 serve`) is kept private as `dc2 serve` keeps it.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.private import NotPrivateError, private_home, tightened_note
from dc2tasks.products.calib import AB_NJY_ZP
from dc2tasks.products.qa.core import QA_DIR, REPORT_FILE
from dc2tasks.service.airflow_env import airflow_command, airflow_env
from dc2tasks.service.demo_sample import DEMO_SEED, make_central, make_demo_sample

log = logging.getLogger(__name__)

DEMO_DAG = "dc2_demo"
DEMO_CHECKED = ("trim_object", "dpdd_object", "source")  # against the truth, and Object vs DPDD rows
# the catalogs the demo run installs (it makes every product): (directory, catalog name, a column
# to count)
INSTALLED = [
    (p.directory, p.catalog_name("demo"), p.catalog.id_column)
    for p in CATALOGUE
    if p.catalog is not None
]


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
        true_mag = -2.5 * np.log10(t[ok]) + AB_NJY_ZP
        out[b] = float(np.nanmax(np.abs(gcr_data[f"mag_{b}"][ok] - true_mag))) if ok.any() else float("nan")
    return out


def source_check(sample, data: dict[str, np.ndarray]) -> float:
    """Largest relative |psFlux - truth| over the Source rows."""
    truth = pd.concat(pd.read_parquet(sample.visit_truth("source", v)) for v in sample.visit_ids())
    t = truth.set_index("id").loc[data["sourceId"], "psf_flux_nJy"].to_numpy()
    ok = np.isfinite(t) & (t != 0)
    return float(np.max(np.abs(data["psFlux"][ok] / t[ok] - 1))) if ok.any() else float("nan")


def run_airflow(workdir: Path) -> int:
    """`airflow db migrate`, `airflow dags test dc2_demo`, then its run's task logs written and its
    trigger rows removed (dc2tasks.airflow.dags_test, run as a process: this layer never imports
    Airflow); the full log goes to a file."""
    env = airflow_env(workdir)
    env["DC2_TRIGGER_MIN_WAIT_S"] = "0"  # `dags test` runs triggers inline: no executor race to avoid
    home = Path(env["AIRFLOW_HOME"])
    if not make_home_private(home):
        return 1
    airflow = airflow_command()
    logfile = home / "dags-test.log"
    with open(logfile, "w") as out:
        for argv in ([airflow, "db", "migrate"], [airflow, "dags", "test", DEMO_DAG]):
            print(f"$ {' '.join(argv[1:])}  (log: {logfile})", flush=True)
            start = time.perf_counter()
            r = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
            print(f"  exit {r.returncode} after {time.perf_counter() - start:.0f} s", flush=True)
            if r.returncode != 0:
                tail = logfile.read_text().splitlines()[-40:]
                print("\n".join(tail), file=sys.stderr)
                return r.returncode
    for task_id, state in task_states(logfile.read_text()).items():
        print(f"  {task_id:<22} {state}")
    # make the run read like one the service made: task log files, no trigger rows left behind
    r = subprocess.run([sys.executable, "-m", "dc2tasks.airflow.dags_test", DEMO_DAG, str(logfile)],
                       env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        print(f"dc2 demo: finishing the run failed (exit {r.returncode}):\n{r.stderr[-4000:]}",
              file=sys.stderr)
        return r.returncode
    print(f"  {r.stdout.strip()}")
    return 0


def make_home_private(home: Path) -> bool:
    """AIRFLOW_HOME 0700 and everything in it ours alone, as `dc2 serve` keeps it: the local
    backend's job token (which signs every job) and the task logs are in it. False, and why on
    stderr, when it cannot be (a symlink, another account's)."""
    try:
        tightened = private_home(home)
    except NotPrivateError as exc:
        print(f"dc2 demo: {exc}", file=sys.stderr)
        return False
    if tightened:
        print(f"dc2 demo: {tightened_note(home, tightened)}", file=sys.stderr)
    return True


_RUNNING = re.compile(rf"running task <TaskInstance: {DEMO_DAG}\.(\S+) ")
_NEW_STATE = re.compile(r"new_state=(\w+)")


def task_states(log_text: str) -> dict[str, str]:
    """The last state `airflow dags test` reported for each task, in the order they first ran."""
    states: dict[str, str] = {}
    current = None
    for line in log_text.splitlines():
        if m := _RUNNING.search(line):
            current = m.group(1)
            states.setdefault(current, "running")
        elif (m := _NEW_STATE.search(line)) and current:
            states[current] = m.group(1)
    return states


def run_in_process(workdir: Path, sample, jobs: int) -> Path:
    """The same product steps in this process (`--no-airflow`), into <workdir>/products; its
    catalog configs directory."""
    from dc2tasks.products.object_pipeline import run_object_pipeline
    from dc2tasks.products.repo import Gen2Repo
    from dc2tasks.products.visit_pipeline import run_visit_pipeline

    repo = Gen2Repo.open(sample.root, sample.rerun)
    products = workdir / "products"
    print(run_object_pipeline(repo, products, run="demo", jobs=jobs).summary())
    result = run_visit_pipeline(repo, products, run="demo")
    for key, files in result.files.items():
        print(f"  {key:<13} {len(files)} file(s) in {products / key}")
    return products / "gcr-catalogs"


def run_demo(workdir: str | Path, seed: int = DEMO_SEED, jobs: int = 2, airflow: bool = True) -> int:
    workdir = Path(workdir).resolve()
    start = time.perf_counter()
    sample = make_demo_sample(workdir, seed)
    print(
        f"Sample repository: {sample.root} (rerun {sample.rerun}, {len(sample.visit_ids())} visits), "
        f"made in {time.perf_counter() - start:.1f} s"
    )
    if airflow:
        central = make_central(workdir)
        rc = run_airflow(workdir)
        if rc != 0:
            print("Demo FAILED: the Airflow run did not succeed (see the log above).")
            return rc
        configs = {
            catalog: central / d / "catalog_configs" / f"{catalog}.yaml" for d, catalog, _ in INSTALLED
        }
        print(f"Installed into {central}:")
        for line in qa_lines(central):
            print(line)
    else:
        cfg_dir = run_in_process(workdir, sample, jobs)
        configs = {catalog: cfg_dir / f"{catalog}.yaml" for _, catalog, _ in INSTALLED}
    return summarise(sample, configs)


def qa_lines(central: Path) -> list[str]:
    """Each installed product's QA verdict (from its version's provenance) and its report's page,
    in the version directory it was installed with."""
    lines = []
    for directory in CATALOGUE.directories(CATALOGUE.names):
        version = (central / directory / "current").resolve()
        try:
            qa = json.loads((version / "provenance.json").read_text()).get("qa") or {}
        except OSError:
            continue  # not installed by this run
        for product, verdict in qa.get("verdicts", {}).items():
            report = version / QA_DIR / product / REPORT_FILE
            lines.append(f"  QA {product:<20} {verdict:<5} report {report}")
    return lines


def scan_hdf5(configs: dict[str, Path]) -> None:
    """Every HDF5 file the catalogs serve, scanned for pickles as the install check does, before
    GCRCatalogs (pandas, PyTables) opens them: the proof that our writers' files pass."""
    from dc2tasks.products import hdf5_safety

    dirs = sorted({Path(yaml.safe_load(p.read_text())["base_dir"]) for p in configs.values()})
    reports = [r for d in dirs for r in hdf5_safety.scan_tree(d)]
    print(f"  {hdf5_safety.summary(reports)}")
    for r in reports:
        print(f"    {r.path}: {r.nodes} nodes, {r.attributes} attributes, {r.pickles} plain-data pickles")


def summarise(sample, configs: dict[str, Path]) -> int:
    scan_hdf5(configs)
    counts = {}
    for _, catalog, column in INSTALLED:
        counts[catalog] = len(load_with_gcr(configs[catalog], [column])[column])
        print(f"  {catalog:<30} {counts[catalog]:>7} rows through GCRCatalogs  ({configs[catalog]})")
    bands = list(sample.bands)
    trimmed, dpdd, source = (CATALOGUE[p].catalog_name("demo") for p in DEMO_CHECKED)
    data = load_with_gcr(
        configs[trimmed], ["objectId", "ra", "dec", "good", *(f"mag_{b}" for b in bands)]
    )
    worst = truth_check(sample, data, bands)
    src = load_with_gcr(configs[source], ["sourceId", "psFlux", "objectId"])
    worst_src = source_check(sample, src)
    matched = int(np.sum(src["objectId"] >= 0))
    print("Largest |mag - truth| per band (Object): " + ", ".join(f"{b} {v:.2e}" for b, v in worst.items()))
    total = len(src["sourceId"])
    print(f"Source: {matched} of {total} matched to an Object; largest |psFlux/truth - 1| {worst_src:.1e}")
    ok = (
        counts[trimmed] == counts[dpdd]
        and all(v < 1e-9 for v in worst.values() if v == v)
        and worst_src < 1e-9
        and all(counts.values())
    )
    print("Demo " + ("succeeded." if ok else "FAILED: the catalogs disagree with the truth table."))
    return 0 if ok else 1

"""A demo-shaped run with the `slurm` backend through the real sshd + Slurm of tests/cluster.

`dag.test()` plans, submits every step as a real Slurm job over SSH (arrays over the two tracts and
over visit stripes), waits with the deferrable trigger, runs `finalize` and `install` over SSH as the
cluster user, and the installed catalogs load through GCRCatalogs in this process (the cluster's
network namespace shares this filesystem). The dry run asks `sbatch --test-only`, submits nothing and
leaves the central directory as it was.

Both connections (producer and collaboration) are the loopback cluster's only login; the install
still goes over SSH as that user, which the owner of the installed files shows. `central.group` is a
supplementary group of that user made here, so the install's chgrp is visible (every file the user
writes gets its primary group anyway).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_ops import sacct_rows, wait_sacct
from conftest import registered_connection, signed
from dagrun import load_dag, retries_of, task_instances, xcom_value
from loopback import loopback, remote_runner

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.runs.loader import RunConfigError, parse_run_config

ACCOUNT = "dc2"  # tests/cluster/loopback_cluster.sh: `sacctmgr add account dc2`, the user in it
CENTRE = tuple(f"{x},{y}" for x in (2, 3, 4) for y in (2, 3, 4))
TRACTS = (4850, 4851)
VISITS_PER_TRACT = 2
VISITS_PER_ELEMENT = 2
TRACT_STEPS = ("object.merge_tract", "object.trim", "object.dpdd")
VISIT_STEPS = ("source", "forced_source", "dia_source")
SINGLE_STEPS = ("object.merge_parquet", "dia_object")
CATALOGS = [  # installed directory, catalog name ({} the run), a column
    ("object", "dc2_object_{}", "objectId"),
    ("object", "dc2_object_{}_all_columns", "objectId"),
    ("dpdd_object", "dc2_object_{}_dpdd", "objectId"),
    ("source", "dc2_source_{}", "sourceId"),
    ("forced_source", "dc2_forced_source_{}", "objectId"),
    ("dia_source", "dc2_dia_source_{}", "diaSourceId"),
    ("dia_object", "dc2_dia_object_{}", "diaObjectId"),
]
Remote = Callable[..., str]

pytestmark = pytest.mark.xdist_group("dags-cluster")
DAGS_CLUSTER = {"DC2_LOOPBACK_USER": "dc2dags", "DC2_LOOPBACK_OTHER_USER": "dc2dagsother",
                "DC2_LOOPBACK_CGROUP": "0"}
"""This module's own loopback cluster (its own accounts; the session's cluster owns the cgroups)."""


@pytest.fixture(scope="module")
def loopback_cluster() -> Iterator[dict[str, str]]:
    """Its whole data runs are the longest tests of a cluster: on a cluster of their own they run on
    another pytest-xdist worker, beside the session cluster's tests rather than after them; the
    module's fixtures (run_base, cluster_user, central_group, ...) use this cluster."""
    with loopback(**DAGS_CLUSTER) as env:
        yield env


@pytest.fixture(scope="module")
def remote(loopback_cluster: dict[str, str]) -> Iterator[Remote]:
    with remote_runner(loopback_cluster) as run:
        yield run


@pytest.fixture(scope="module")
def slurm_conn(loopback_cluster: dict[str, str]) -> Iterator[str]:
    with registered_connection(loopback_cluster) as conn_id:
        yield conn_id


# -- the run file key `slurm.dc2_command` and `slurm.poll_interval` (no cluster needed) -------------------


def _run_data(**slurm: Any) -> dict[str, Any]:
    return {
        "name": "h7_slurm", "backend": "slurm", "repository": "/data/repo", "tracts": [4850],
        "pixel_scale": 0.2, "products": ["object", "source"], "visits": [1, 2, 3],
        "working_dir": "/scratch/work", "central": {"dir": "/central", "group": "lsst"},
        "slurm": {"account": "m1727", **slurm},
        "connections": {"producer": "nersc_producer", "collaboration": "nersc_desc"},
    }


def test_dc2_command_reaches_the_job_scripts_and_shifter_wraps_it() -> None:
    from dc2tasks.airflow.operators.step import dc2_command
    from dc2tasks.runs.params import validate_params
    from dc2tasks.runs.steps import plan_run, step_scripts

    config = parse_run_config(_run_data(dc2_command="/opt/dc2/bin/dc2"), "/runs/h7.yaml")
    assert dc2_command(config) == "/opt/dc2/bin/dc2"
    scripts = step_scripts(config, plan_run(config, validate_params({}, config)), dc2_command(config))
    assert "/opt/dc2/bin/dc2 merge-tract /data/repo --bands ugrizy" in scripts["merge_tract"].script
    assert "\n/opt/dc2/bin/dc2 source /data/repo --visits 1 2 3 -o /scratch/work/source" in (
        scripts["source"].script)
    assert dc2_command(parse_run_config(_run_data(), "/runs/h7.yaml")) == "dc2"
    image = {"image": "docker:lsstdesc/dc2:1"}
    assert dc2_command(parse_run_config(_run_data(**image), "/runs/h7.yaml")) == "shifter dc2"
    assert dc2_command(parse_run_config(_run_data(**image, dc2_command="/opt/dc2"), "/r.yaml")) == (
        "shifter /opt/dc2")
    assert dc2_command(parse_run_config(_run_data(**image, dc2_command="shifter dc2"), "/r.yaml")) == (
        "shifter dc2")


@pytest.mark.parametrize("command", ["dc2 --verbose", "dc2;id", "bin/dc2", "/opt/my dc2", "$(id)",
                                     "/opt/dc2'", "shifter  dc2", ""])
def test_a_dc2_command_that_would_need_quoting_is_refused_with_the_field_named(command: str) -> None:
    with pytest.raises(RunConfigError) as err:
        parse_run_config(_run_data(dc2_command=command), "/runs/h7.yaml")
    assert str(err.value).startswith(f"/runs/h7.yaml: slurm.dc2_command: {command!r} is not a dc2 command")


def test_shifter_in_the_command_needs_an_image() -> None:
    with pytest.raises(RunConfigError) as err:
        parse_run_config(_run_data(dc2_command="shifter dc2"), "/runs/h7.yaml")
    assert str(err.value) == (
        "/runs/h7.yaml: slurm: dc2_command 'shifter dc2' runs dc2 in shifter: set slurm.image too")


def test_poll_interval_from_the_run_file(airflow_db: str) -> None:
    from dc2tasks.airflow.run_dag import build_dag

    def interval(**slurm: Any) -> float:
        dag = build_dag(parse_run_config(_run_data(**slurm), "/runs/h7.yaml"), "/runs/h7.yaml")
        return dag.get_task("source").poll_interval

    assert interval() == 30.0
    assert interval(poll_interval=2) == 2.0
    with pytest.raises(RunConfigError, match=r"slurm.poll_interval: Input should be greater than or equal"):
        parse_run_config(_run_data(poll_interval=0), "/runs/h7.yaml")


# -- the cluster: where the run's files go, how its jobs find dc2 -------------------------------------------


@pytest.fixture(scope="module")
def sample(run_base: Path) -> Any:
    from dc2tasks.sample import SampleConfig, make_sample_repo

    made = make_sample_repo(run_base / "sample-repo", SampleConfig(
        tracts=TRACTS, patches=CENTRE, objects_per_patch=40, visits=VISITS_PER_TRACT))
    made.write_visit_list(run_base / "sample-repo" / "visits.txt")
    return made


@pytest.fixture
def make_run(run_base: Path, cluster_dc2: str, cluster_user: pwd.struct_passwd,
             central_group: grp.struct_group, sample: Any, slurm_conn: str,
             airflow_db: str) -> Iterator[Callable[[str], Any]]:
    """Write a run file with backend slurm and its DAG file; return the DAG as dag.test() needs it."""

    stubs: list[Path] = []

    def make(name: str) -> Any:
        run_dir = run_base / name
        run_dir.mkdir()
        central = run_dir / "central"
        central.mkdir()
        for path in (run_dir, central):
            os.chown(path, cluster_user.pw_uid, central_group.gr_gid)
        central.chmod(0o3775)  # shared by the group: dc2 install needs sticky+setgid (group_managed)
        run = {
            "name": name,
            "description": "the demo's products from a sample repository, through sshd + Slurm",
            "backend": "slurm",
            "repository": str(sample.root),
            "rerun": sample.rerun,
            "tracts": list(TRACTS),
            "visits": str(sample.root / "visits.txt"),
            "pixel_scale": 0.2,
            "products": ["object", "trim_object", "dpdd_object", "merged_dpdd_object", "source",
                         "forced_source", "dia_source", "dia_object"],
            "working_dir": str(run_dir / "work"),
            "central": {"dir": str(central), "group": central_group.gr_name, "group_managed": True},
            "slurm": {
                "account": ACCOUNT,
                "dc2_command": cluster_dc2,
                "poll_interval": 2,
                # every step key (the catalogue's): a job without a limit gets the loopback node's
                # DefMemPerCPU (200 MB), which a `dc2 qa` job (numpy, pyarrow, matplotlib) can exceed
                "time": dict.fromkeys(CATALOGUE.steps, "0:10:00"),
                "memory": dict.fromkeys(CATALOGUE.steps, "1G"),  # the loopback node has 4000M
                "array_throttle": 2,
                "visits_per_array_element": VISITS_PER_ELEMENT,
            },
            "connections": {"producer": slurm_conn, "collaboration": slurm_conn},
        }
        run_file = run_dir / f"{name}.yaml"
        run_file.write_text(yaml.safe_dump(run, sort_keys=False))
        dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        dags.mkdir(parents=True, exist_ok=True)
        stub = dags / f"dc2_{name}.py"
        stub.write_text("from dc2tasks.airflow.run_dag import dag_from_run_file\n\n"
                        f"dag = dag_from_run_file({str(run_file)!r})\n")
        stubs.append(stub)
        return load_dag(stub)

    yield make
    for stub in stubs:
        stub.unlink(missing_ok=True)


def _elements(task_id: str) -> int | None:
    """Array elements each step's job has (None: a plain job)."""
    if task_id in TRACT_STEPS:
        return len(TRACTS)
    if task_id in VISIT_STEPS:
        return -(-len(TRACTS) * VISITS_PER_TRACT // VISITS_PER_ELEMENT)
    return None


def _tree(root: Path) -> list[tuple[object, ...]]:
    """Everything about a directory tree a change would show (names, modes, owners, sizes, times)."""
    out: list[tuple[object, ...]] = []
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        out.append((str(path.relative_to(root)), st.st_mode, st.st_uid, st.st_gid, st.st_size,
                    st.st_mtime_ns, link))
    return out


# -- the run -------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_demo_run_with_the_slurm_backend_over_ssh(make_run: Callable[[str], Any], remote: Remote,
                                                 sample: Any, cluster_user: pwd.struct_passwd,
                                                 central_group: grp.struct_group,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    from dc2tasks.airflow.job_name import job_name_for
    from dc2tasks.service.demo import load_with_gcr, truth_check

    dag = make_run("h7_slurm")
    started = time.monotonic()
    dr = dag.test()
    wall = time.monotonic() - started
    console = capfd.readouterr()
    print(console.out, end="")  # kept in the report
    print(console.err, end="", file=sys.stderr)
    tis = task_instances(dr)
    states = {task_id: str(ti.state) for task_id, ti in tis.items()}
    assert str(dr.state) == "success", states
    assert states.pop("approve_qa") == "skipped", states  # qa mode enforce: no approval asked
    qa = [f"qa.{p}" for p in dag.get_task("object.dpdd").config.products]  # `dc2 qa` jobs on the cluster
    assert states == dict.fromkeys([*TRACT_STEPS, *SINGLE_STEPS, *VISIT_STEPS, "inventory", "plan",
                                    "finalize", *qa, "install"], "success")
    assert {ti.try_number for ti in tis.values()} == {1}, retries_of(tis, console.out + console.err)

    # every product was made by real Slurm jobs under the step's deterministic name
    run_elements: set[str] = set()
    for task_id in (*TRACT_STEPS, *SINGLE_STEPS, *VISIT_STEPS):
        job_id = xcom_value(dr, task_id, "slurm_job_id")
        count = _elements(task_id)
        want = [job_id] if count is None else [f"{job_id}_{i}" for i in range(count)]
        name = job_name_for(dag.dag_id, task_id, dr.run_id, -1)
        rows = wait_sacct(remote, name, lambda rows, want=want: sorted(r["JobID"] for r in rows) == want
                          and all(r["State"] == "COMPLETED" for r in rows))
        assert {(r["JobName"], r["ExitCode"], r["Comment"]) for r in rows} == {(name, "0:0", signed(name, 1))}
        run_elements.update(want)
    # the job logs' directory, made by plan over SSH: the cluster user's, closed to other users
    logs = (Path(xcom_value(dr, "plan")["work_dir"]) / "logs").lstat()
    assert (stat.S_ISDIR(logs.st_mode), stat.S_IMODE(logs.st_mode), logs.st_uid) == (
        True, 0o750, cluster_user.pw_uid)

    # installed over SSH as the cluster user, chgrp'd and chmod'ed, a version behind `current`
    central = _central_of(dag)
    results = xcom_value(dr, "install")
    assert sorted(results) == ["dia_object", "dia_source", "dpdd_object", "forced_source", "object", "source"]
    for directory, result in results.items():
        assert result["status"] == "installed", (directory, result)
        current = central / directory / "current"
        assert current.is_symlink() and current.resolve().parent == central / directory / "versions"
        provenance = json.loads((current / "provenance.json").read_text())
        assert provenance["run"] == "h7_slurm"
        assert provenance["installed_by"]["user"] == cluster_user.pw_name
        assert {j["job_id"] for j in provenance["jobs"]} >= run_elements, directory
        assert {j["state"] for j in provenance["jobs"]} == {"COMPLETED"}
        for path in [central / directory, *(central / directory).rglob("*")]:
            st = path.lstat()
            where = f"{path}: {stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
            assert (st.st_uid, st.st_gid) == (cluster_user.pw_uid, central_group.gr_gid), where
            if stat.S_ISLNK(st.st_mode):
                continue
            if path.name == ".install.lock":  # only the installing account may open (and flock) it
                assert stat.S_IMODE(st.st_mode) == 0o600, where
                continue
            assert st.st_mode & stat.S_IRGRP and not st.st_mode & stat.S_IWOTH, where
            assert not stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXGRP, where

    # GCRCatalogs, in this process, loads every installed catalog; the Object values are the truth's
    loaded = {}
    for directory, catalog, column in CATALOGS:
        catalog = catalog.format("h7_slurm")
        config = central / directory / "catalog_configs" / f"{catalog}.yaml"
        with_mags = catalog == "dc2_object_h7_slurm"
        quantities = [column, *(f"mag_{b}" for b in "ugrizy")] if with_mags else [column]
        loaded[catalog] = load_with_gcr(config, quantities)
        assert len(loaded[catalog][column]) > 0, catalog
    objects = loaded["dc2_object_h7_slurm"]["objectId"]
    assert len(objects) == len(set(objects)) == len(loaded["dc2_object_h7_slurm_dpdd"]["objectId"])
    worst = truth_check(sample, loaded["dc2_object_h7_slurm"], list("ugrizy"))
    assert max(worst.values()) < 1e-9, worst
    visits = sorted(int(p.stem.split("_")[-1]) for p in (central / "source" / "current").glob("src_visit_*"))
    assert visits == sorted(sample.visit_ids())
    print(f"slurm-backend demo run: {wall:.0f} s for dag.test() "
          f"({len(run_elements)} Slurm job elements, {len(objects)} objects)")


@pytest.mark.cluster
def test_dry_run_asks_slurm_submits_nothing_and_leaves_the_central_directory(
    make_run: Callable[[str], Any], remote: Remote, central_group: grp.struct_group
) -> None:
    from dc2tasks.airflow.job_name import job_name_for

    dag = make_run("h7_slurm_dry")
    central = _central_of(dag)
    before = _tree(central)
    dr = dag.test(run_conf={"dry_run": True})
    states = {task_id: str(ti.state) for task_id, ti in task_instances(dr).items()}
    assert str(dr.state) == "success", states
    assert states.pop("approve_qa") == "skipped", states  # qa mode enforce: no approval asked
    assert set(states.values()) == {"success"}, states

    steps = (*TRACT_STEPS, *SINGLE_STEPS, *VISIT_STEPS)
    for task_id in steps:
        answer = xcom_value(dr, task_id)
        assert "to start at" in answer and "in partition debug" in answer, (task_id, answer)
        assert xcom_value(dr, task_id, "slurm_job_id") is None
    configs = xcom_value(dr, "finalize")  # rendered, as they would be installed
    for directory in ("object", "source", "dia_object"):
        assert configs[f"dc2_{directory}_h7_slurm_dry"]["base_dir"] == str(central / directory / "current")
    for directory, result in xcom_value(dr, "install").items():
        assert result["status"] == "dry-run", (directory, result)
        assert f"{central}: writable, chgrp to gid {central_group.gr_gid} allowed" in result["checks"]

    # a job submitted now reaches accounting after anything submitted before it: once sacct shows
    # it, no job of the dry run can still be on its way
    marker = f"h7-dry-run-barrier-{int(time.time())}"
    remote("sbatch", "--parsable", f"--job-name={marker}", f"--account={ACCOUNT}", "--output=/dev/null",
           "--wrap=true")
    wait_sacct(remote, marker, lambda rows: bool(rows))
    for task_id in steps:
        name = job_name_for(dag.dag_id, task_id, dr.run_id, -1)
        assert sacct_rows(remote, name) == [], task_id
        assert remote("squeue", "--noheader", f"--name={name}").strip() == "", task_id
    assert _tree(central) == before


def _central_of(dag: Any) -> Path:
    return Path(dag.get_task("object.merge_tract").config.central.dir)


@pytest.mark.cluster
def test_a_run_whose_inputs_are_absent_fails_at_inventory_and_submits_nothing(
    make_run: Callable[[str], Any], remote: Remote
) -> None:
    """`source` of a visit the repository does not have: `inventory` (over SSH on the login node, no
    job) fails naming why, no other task runs, and sacct knows no job of the run. Kept simple: one
    trigger, the dry-run test's barrier job, one sacct query per step."""
    from dc2tasks.airflow.job_name import job_name_for

    dag = make_run("inv_absent")
    dr = dag.test(run_conf={"products": ["source"], "visits": [999999]})
    states = {task_id: str(ti.state) for task_id, ti in task_instances(dr).items()}
    assert str(dr.state) == "failed", states
    assert states["inventory"] == "failed", states
    assert all(s in ("upstream_failed", "None") for t, s in states.items() if t != "inventory"), states
    marker = f"inventory-barrier-{int(time.time())}"
    remote("sbatch", "--parsable", f"--job-name={marker}", f"--account={ACCOUNT}", "--output=/dev/null",
           "--wrap=true")
    wait_sacct(remote, marker, lambda rows: bool(rows))
    for task_id in (*TRACT_STEPS, *SINGLE_STEPS, *VISIT_STEPS):
        assert sacct_rows(remote, job_name_for(dag.dag_id, task_id, dr.run_id, -1)) == [], task_id

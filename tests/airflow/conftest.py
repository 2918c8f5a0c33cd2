"""Fixtures for the Airflow tests: a throw-away AIRFLOW_HOME with a migrated SQLite database (set
before Airflow is first imported), the loopback Slurm cluster, and an Airflow SSH connection to it.

The cluster is tests/conftest.py's `loopback_cluster` (one per session, shared with tests/slurm).
Same rules: not root and not CI -> skipped; CI=true -> a cluster
that cannot start FAILS the tests.
"""

from __future__ import annotations

import atexit
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from loopback import remote_runner

if "airflow" not in sys.modules:  # must precede the first `import airflow` of the session
    _HOME = tempfile.mkdtemp(prefix="dc2-airflow-test-")
    atexit.register(shutil.rmtree, _HOME, True)
    os.environ["AIRFLOW_HOME"] = _HOME
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(_HOME) / "dags")
    os.environ["DC2_LOCAL_SLURM_DIR"] = str(Path(_HOME) / "local-slurm")
    # dag.test() runs triggers inline (no executor race to wait out); tests/airflow/services.py sets
    # its own value for the real triggerer
    os.environ.setdefault("DC2_TRIGGER_MIN_WAIT_S", "0")

SLURM_CONN_ID = "dc2_test_slurm"
CENTRAL_GROUP = "{user}-central"
"""A supplementary group of the cluster user, made for the installs: one per cluster user, so two
clusters' modules running at once (on two pytest-xdist workers) never remove each other's."""
TEST_JOB_TOKEN = "loopback-test-deployment-job-token"
"""The job token of the tests' SSH connections (extra `job_token`), as a deployment sets it."""


def signed(name: str, try_number: int) -> str:
    """The comment the operator gives try `try_number` of job `name` under the tests' token."""
    from dc2tasks.slurm.owner import job_comment

    return job_comment(name, try_number, TEST_JOB_TOKEN)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's SQLite metadata database once (~3 s)."""
    home = os.environ["AIRFLOW_HOME"]
    r = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                       check=False, env=os.environ.copy())
    if r.returncode != 0:
        pytest.fail(f"airflow db migrate failed in {home}:\n{r.stderr[-3000:]}")
    return home


def pinned_host_key(env: dict[str, str]) -> str:
    parts = Path(env["DC2_SLURM_SSH_KNOWN_HOSTS"]).read_text().split()
    return f"{parts[1]} {parts[2]}"


def ssh_connection_json(env: dict[str, str], **extra: object) -> str:
    """The cluster as an Airflow SSH connection (the form a deployment would use); an extra given
    as None is left out (e.g. `job_token=None`)."""
    extras = {"key_file": env["DC2_SLURM_SSH_KEY"], "host_key": pinned_host_key(env),
              "conn_timeout": 10, "cmd_timeout": 30, "job_token": TEST_JOB_TOKEN, **extra}
    return json.dumps({
        "conn_type": "ssh", "host": env["DC2_SLURM_SSH_HOST"], "port": int(env["DC2_SLURM_SSH_PORT"]),
        "login": env["DC2_SLURM_SSH_USER"],
        "extra": {k: v for k, v in extras.items() if v is not None},
    })


@contextmanager
def registered_connection(env: dict[str, str]) -> Iterator[str]:
    """The cluster `env` as the connection SLURM_CONN_ID (AIRFLOW_CONN_<ID>) of this process and its
    children; what was registered before is restored after (a module with a cluster of its own may
    run between two tests of the session's cluster on one pytest-xdist worker)."""
    var = f"AIRFLOW_CONN_{SLURM_CONN_ID.upper()}"
    before = os.environ.get(var)
    os.environ[var] = ssh_connection_json(env)
    try:
        yield SLURM_CONN_ID
    finally:
        if before is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = before


@pytest.fixture(scope="session")
def slurm_conn(loopback_cluster: dict[str, str]) -> Iterator[str]:
    """Registers the connection as AIRFLOW_CONN_<ID> for this process and its children."""
    with registered_connection(loopback_cluster) as conn_id:
        yield conn_id


@pytest.fixture(scope="session")
def remote(loopback_cluster: dict[str, str]) -> Iterator[Callable[..., str]]:
    """Run a command on the login node (for checks straight from sacct), with its own connection."""
    with remote_runner(loopback_cluster) as run:
        yield run


# -- data runs on the cluster: its user, a group, where runs write, how jobs find dc2 ----------

def _as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=120,
                          check=False, cwd="/")


@pytest.fixture(scope="module")
def cluster_user(loopback_cluster: dict[str, str]) -> pwd.struct_passwd:
    return pwd.getpwnam(loopback_cluster["DC2_SLURM_SSH_USER"])


@pytest.fixture(scope="module")
def central_group(cluster_user: pwd.struct_passwd) -> Iterator[grp.struct_group]:
    """A supplementary group of the cluster user (added before any SSH login of this module, so the
    sessions that install have it); removed again if this fixture made it."""
    user = cluster_user.pw_name
    name = CENTRAL_GROUP.format(user=user)
    try:
        grp.getgrnam(name)
        created = False
    except KeyError:
        subprocess.run(["groupadd", name], check=True)
        created = True
    was_member = user in grp.getgrnam(name).gr_mem
    subprocess.run(["usermod", "-aG", name, user], check=True)
    yield grp.getgrnam(name)
    if created:
        subprocess.run(["groupdel", name], check=False)
    elif not was_member:
        subprocess.run(["gpasswd", "-d", user, name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def run_base(loopback_cluster: dict[str, str], cluster_user: pwd.struct_passwd,
             request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory in the cluster user's home (where that user may write), owned by the user."""
    base = Path(loopback_cluster["DC2_SLURM_WORKDIR"]) / f"runs-{request.module.__name__}"
    base.mkdir(mode=0o755)
    os.chown(base, cluster_user.pw_uid, cluster_user.pw_gid)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _readable_environment(dest: Path) -> Path:
    """This checkout's .venv behind an interpreter the cluster user may execute.

    The .venv's base interpreter can sit where only root may look (here: pyenv under /root, mode
    700). The system's Python of the same minor version runs the .venv's site-packages just as well
    (same ABI; dc2tasks is installed editable from this world-readable checkout), so a venv of it
    whose only content is a .pth adding those site-packages is all the cluster needs. Nothing in the
    repository changes mode."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.fail(f"no system python{version} for the cluster user to run this .venv's packages with")
    env = dest / "dc2-env"
    site_packages = env / "lib" / f"python{version}" / "site-packages"
    site_packages.mkdir(parents=True)
    (env / "bin").mkdir()
    (env / "bin" / "python3").symlink_to(python)
    (env / "pyvenv.cfg").write_text(f"home = {Path(python).parent}\ninclude-system-site-packages = false\n")
    repo_site = sysconfig.get_paths()["purelib"]
    (site_packages / "dc2-checkout.pth").write_text(f"import site; site.addsitedir({repo_site!r})\n")
    dc2 = env / "bin" / "dc2"
    dc2.write_text(f"#!{env}/bin/python3\nimport sys\n\nfrom dc2tasks.cli import main\n\nsys.exit(main())\n")
    dc2.chmod(0o755)
    return dc2


@pytest.fixture(scope="module")
def cluster_dc2(run_base: Path, cluster_user: pwd.struct_passwd) -> str:
    """The `slurm.dc2_command` of these runs: this .venv's dc2 if the cluster user can run it."""
    repo_dc2 = Path(sys.executable).with_name("dc2")
    direct = _as_user(cluster_user.pw_name, str(repo_dc2), "--version")
    if direct.returncode == 0:
        return str(repo_dc2)
    dc2 = _readable_environment(run_base)
    answer = _as_user(cluster_user.pw_name, str(dc2), "--version")
    assert answer.returncode == 0, f"{dc2} --version as {cluster_user.pw_name}: {answer.stderr}"
    print(f"{repo_dc2} is not executable by {cluster_user.pw_name} ({direct.stderr.strip()}); jobs use {dc2}")
    return str(dc2)

CENTRE = tuple(f"{x},{y}" for x in (2, 3, 4) for y in (2, 3, 4))
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def demo_folders(tmp_path, monkeypatch, airflow_db) -> tuple[Path, Path]:
    """The demo run's directory (DC2_DEMO_DIR, with an empty central directory) and the DAG files
    where `dag.test()` looks for them; no sample repository (see demo_dags)."""
    demo = tmp_path / "demo"
    monkeypatch.setenv("DC2_DEMO_DIR", str(demo))
    (demo / "central").mkdir(parents=True)
    folder = Path(airflow_db) / "dags"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(DAGS, folder)
    return demo, folder


@pytest.fixture
def demo_dags(demo_folders):
    """The demo run's sample repository, and the DAG files where `dag.test()` looks for them."""
    from dc2tasks.sample import SampleConfig, make_sample_repo

    demo, folder = demo_folders
    sample = make_sample_repo(
        demo / "sample-repo", SampleConfig(patches=CENTRE, objects_per_patch=80, visits=3)
    )
    sample.write_visit_list(demo / "sample-repo" / "visits.txt")
    return sample, demo, folder

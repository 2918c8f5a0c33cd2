"""`dc2 serve` (`make serve`): `airflow standalone` with the DC2 DAGs on this machine, for a person.

`airflow standalone` runs api-server, scheduler, dag-processor and triggerer, but also two log
servers that listen on every interface (8793, 8794), with no setting to change that. So it runs in
a private network namespace (dc2tasks.netns): its only way in is 127.0.0.1:PORT on the host,
forwarded to the api-server inside. The simple auth manager has exactly one user, whose password
Airflow generates. Everything runs in one process group, stopped and reaped by the namespace's
first process on Ctrl-C or SIGTERM. The demo run (dags/runs/demo.yaml) reads the same sample
repository `dc2 demo` makes, under the same work directory.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from dc2tasks.demo import airflow_env, make_demo_sample
from dc2tasks.netns import isolation_prefix

USER = "admin"
ROLE = "admin"
HEALTHY = ("metadatabase", "scheduler", "triggerer", "dag_processor")
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"

DESCRIPTION = """\
Start the Airflow web UI with this repository's DAGs (dags/) on http://127.0.0.1:PORT, for the
demo data run on the sample repository and a look at the other runs' DAGs.

It makes the sample repository under WORKDIR if it is not there yet (what `dc2 demo` makes:
WORKDIR/sample-repo with visits.txt, and WORKDIR/central for the installs), sets
AIRFLOW_HOME=WORKDIR/airflow (SQLite, LocalExecutor) and runs `airflow standalone` (api-server,
scheduler, dag-processor, triggerer) in a private network namespace, so that nothing it starts
listens on this machine's network; only 127.0.0.1:PORT is forwarded to its api-server. It prints
the address, the user name and its password (generated once by Airflow's simple auth manager and
kept in WORKDIR/airflow/simple_auth_manager_passwords.json.generated) and where the logs are.

A network namespace needs root, or unprivileged user namespaces (`unshare --user --net`). Where
neither is available, --share-network runs standalone directly: the UI still listens on 127.0.0.1
only, but standalone's two log servers listen on every interface (ports 8793 and 8794).

In the UI: open dc2_demo, Trigger, pick the products (the form explains each param), and follow the
run in the grid; each Slurm step's log shows its job's output (the local job backend runs the jobs
on this machine). Ctrl-C (or SIGTERM) stops every process this command started.
"""


class ServeError(RuntimeError):
    """A service that did not start or become healthy; the message says which and where its log is."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="the Airflow UI with the DC2 DAGs on 127.0.0.1 (demo run ready to trigger)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("demo-output"),
        help="where the sample repository, work files, installs and Airflow home go (default: demo-output)",
    )
    p.add_argument("--port", type=_port, default=8080, help="api-server port on 127.0.0.1 (default: 8080)")
    p.add_argument("--seed", type=int, default=2018, help="sample repository seed, if it must be made")
    p.add_argument(
        "--timeout", type=float, default=180, help="seconds to wait for Airflow to be healthy"
    )
    p.add_argument(
        "--share-network",
        action="store_true",
        help="no private network namespace: standalone's log servers listen on every interface",
    )
    p.set_defaults(func=run)
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port is an integer 1-65535, not {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port is an integer 1-65535, not {text!r}")
    return value


def prepare_demo(workdir: Path, seed: int) -> bool:
    """Make the sample repository unless a complete one is there; True when it was made.

    visits.txt is written last, so a repository without it is a half-made one and is remade."""
    if not (workdir / "sample-repo" / "visits.txt").is_file():
        make_demo_sample(workdir, seed)
        made = True
    else:
        made = False
    (workdir / "central").mkdir(mode=0o755, parents=True, exist_ok=True)  # dc2 install refuses g+w
    return made


def _jwt_secret(home: Path) -> str:
    """One secret shared by every service (tasks' execution tokens and UI logins are signed with it),
    kept in AIRFLOW_HOME so a browser's login survives a restart of `dc2 serve`."""
    path = home / "jwt_secret"
    if not path.is_file():
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
        tmp.replace(path)
    return path.read_text().strip()


def serve_env(workdir: Path, port: int) -> dict[str, str]:
    """The demo's Airflow environment (dc2tasks.demo.airflow_env) plus what running services needs."""
    env = airflow_env(workdir)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
        "SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:{ROLE}",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API_AUTH__JWT_SECRET=_jwt_secret(home),
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="30",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
    )
    env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", None)
    return env


class Standalone:
    """`airflow standalone` in its own session (and network namespace unless `isolate` is None);
    its output in AIRFLOW_HOME/services/standalone.log."""

    def __init__(self, env: dict[str, str], port: int, isolate: list[str] | None) -> None:
        self.env = env
        self.port = port
        self.isolate = isolate
        self.home = Path(env["AIRFLOW_HOME"])
        self.logs = self.home / "services"
        self.log = self.logs / "standalone.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        # standalone starts each service as `airflow ...` from PATH: this environment's first
        env = dict(self.env, PATH=os.pathsep.join([str(Path(self.airflow).parent), self.env.get("PATH", "")]))
        argv = [self.airflow, "standalone"]
        pass_fds: tuple[int, ...] = ()
        listener = None
        if self.isolate is not None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            pass_fds = (listener.fileno(),)
            argv = [*self.isolate, sys.executable, "-m", "dc2tasks.netns",
                    "--listen-fd", str(listener.fileno()), "--port", str(self.port), "--", *argv]
        try:
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    pass_fds=pass_fds, start_new_session=True,
                )
        finally:
            if listener is not None:
                listener.close()  # the namespace's forwarder holds it now

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.exited():
                assert self.proc is not None
                raise ServeError(f"airflow standalone exited {self.proc.returncode}; see {self.log}:\n"
                                 + _tail(self.log))
            try:
                url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    health = json.load(resp)
                last = json.dumps(health)
                if all(health.get(c, {}).get("status") == "healthy" for c in HEALTHY):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
                last = str(exc)
            time.sleep(1)
        raise ServeError(
            f"Airflow was not healthy after {timeout:.0f} s (last: {last}); its log: {self.log}"
        )

    def password(self, timeout: float = 30) -> str:
        """The user's password, which standalone generates into AIRFLOW_HOME on its first start."""
        path = self.home / PASSWORDS_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return str(json.loads(path.read_text())[USER])
            except (OSError, ValueError, KeyError):
                time.sleep(0.5)
        raise ServeError(f"no password for {USER!r} in {path} after {timeout:.0f} s")

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the group (every service shuts down in parallel; in a namespace, its first
        process also waits for and reaps them), then SIGKILL whatever is left in the group."""
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 30
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def port_in_use(port: int) -> bool:
    """As uvicorn binds (SO_REUSEADDR): a listener makes it fail, a restart's TIME_WAIT does not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run(args: argparse.Namespace) -> int:
    if port_in_use(args.port):
        print(
            f"dc2 serve: 127.0.0.1:{args.port} is in use (another Airflow?); choose one with --port",
            file=sys.stderr,
        )
        return 1
    isolate: list[str] | None = None
    if not args.share_network:
        isolate, why_not = isolation_prefix()
        if isolate is None:
            print(
                f"dc2 serve: cannot make a private network namespace here ({why_not}).\n"
                "airflow standalone's log servers would listen on every interface (ports 8793 and "
                "8794); run `dc2 serve --share-network` to accept that.",
                file=sys.stderr,
            )
            return 1
    workdir = Path(args.workdir).resolve()
    start = time.perf_counter()
    if prepare_demo(workdir, args.seed):
        print(f"Made the sample repository {workdir / 'sample-repo'} ({time.perf_counter() - start:.1f} s)")
    env = serve_env(workdir, args.port)
    standalone = Standalone(env, args.port, isolate)
    # SIGINT too: a process started in the background by a script inherits SIGINT ignored
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        where = "in a private network namespace" if isolate else "sharing this machine's network"
        print(f"AIRFLOW_HOME={standalone.home}; starting airflow standalone {where} (~20 s)...", flush=True)
        if isolate is None:
            print("dc2 serve: --share-network: its log servers listen on every interface (8793, 8794)",
                  file=sys.stderr, flush=True)
        standalone.start()
        standalone.wait_healthy(args.timeout)
        password = standalone.password()
        assert standalone.proc is not None
        print(
            f"\nAirflow is up after {time.perf_counter() - start:.0f} s: http://127.0.0.1:{args.port}\n"
            f"  user:     {USER}\n"
            f"  password: {password}\n"
            f"  (kept in {standalone.home / PASSWORDS_FILE})\n"
            f"DAGs from {env['AIRFLOW__CORE__DAGS_FOLDER']}; the demo run is dc2_demo (installs into "
            f"{workdir / 'central'}).\n"
            f"airflow standalone's log: {standalone.log}; task logs: {standalone.home / 'logs'}\n"
            f"  process group {standalone.proc.pid}",
            flush=True,
        )
        print("Ctrl-C stops every process.", flush=True)
        while not standalone.exited():
            time.sleep(1)
        print(
            f"dc2 serve: airflow standalone exited {standalone.proc.returncode}. Its log: {standalone.log}\n"
            f"{_tail(standalone.log)}",
            file=sys.stderr,
        )
        return 1
    except ServeError as exc:
        print(f"dc2 serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Airflow...", flush=True)
        return 0
    finally:
        # a second Ctrl-C must not cut the stop short: stop() ends with SIGKILL anyway
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        standalone.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("Stopped every process this command started.", flush=True)

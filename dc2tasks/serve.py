"""`dc2 serve` (`make serve`): the Airflow UI with the DC2 DAGs on this machine, for a person to try.

Why not `airflow standalone`: it binds 0.0.0.0 (and its log servers on 8793/8794), and logs in
everyone as admin. Here the four services are started one by one on 127.0.0.1 (api-server,
scheduler, dag-processor, triggerer; SQLite, LocalExecutor, parallelism 4), the simple auth manager
has exactly one user, and every process is started in its own process group so Ctrl-C or SIGTERM
stops what this command started, and nothing else. The demo run (dags/runs/demo.yaml) reads the
same sample repository `dc2 demo` makes, under the same work directory.
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

USER = "admin"
ROLE = "admin"
# `airflow <argv>` per service; {port} is the api-server's. --skip-serve-logs: the api-server reads
# task logs from the shared log folder, so no log server (which would listen on every interface).
COMPONENTS: dict[str, tuple[str, ...]] = {
    "api-server": ("api-server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"),
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer", "--skip-serve-logs"),
}
HEALTHY = ("metadatabase", "scheduler", "triggerer", "dag_processor")
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"

DESCRIPTION = """\
Start the Airflow web UI with this repository's DAGs (dags/) on http://127.0.0.1:PORT, for the
demo data run on the sample repository and a look at the other runs' DAGs.

It makes the sample repository under WORKDIR if it is not there yet (what `dc2 demo` makes:
WORKDIR/sample-repo with visits.txt, and WORKDIR/central for the installs), sets
AIRFLOW_HOME=WORKDIR/airflow (SQLite), migrates the database, and starts api-server (on 127.0.0.1
only), scheduler, dag-processor and triggerer. It prints the address, the user name and its
password (generated once by Airflow's simple auth manager and kept in
WORKDIR/airflow/simple_auth_manager_passwords.json.generated) and where the logs are.

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
        "--timeout", type=float, default=180, help="seconds to wait for the services to be healthy"
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
    (workdir / "central").mkdir(parents=True, exist_ok=True)
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


class Services:
    """The four Airflow processes, each in its own process group, stopped by the pids we started."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.home = Path(env["AIRFLOW_HOME"])
        self.logs = self.home / "services"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    def migrate(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / "db-migrate.log"
        with open(log, "wb") as out:
            r = subprocess.run(
                [self.airflow, "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if r.returncode != 0:
            raise ServeError(f"airflow db migrate exited {r.returncode}; see {log}:\n{_tail(log)}")

    def start(self) -> None:
        for name, argv in COMPONENTS.items():
            with open(self.logs / f"{name}.log", "ab") as out:
                self.procs[name] = subprocess.Popen(
                    [self.airflow, *(a.format(port=self.port) for a in argv)],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )

    def exited(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if dead := self.exited():
                name = dead[0]
                raise ServeError(
                    f"airflow {name} exited {self.procs[name].returncode}; see {self.logs / f'{name}.log'}:\n"
                    + _tail(self.logs / f"{name}.log")
                )
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
            f"the Airflow services were not healthy after {timeout:.0f} s (last: {last}); logs in {self.logs}"
        )

    def password(self, timeout: float = 30) -> str:
        """The user's password, which the api-server generates into AIRFLOW_HOME on its first start."""
        path = self.home / PASSWORDS_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return str(json.loads(path.read_text())[USER])
            except (OSError, ValueError, KeyError):
                time.sleep(0.5)
        raise ServeError(f"no password for {USER!r} in {path} after {timeout:.0f} s")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every group at once (they shut down in parallel), then SIGKILL what is left,
        including LocalExecutor workers that outlived their parent in the group."""
        for p in self.procs.values():
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():
            _signal_group(p.pid, signal.SIGKILL)
            if p.poll() is None:
                p.wait(timeout=10)
        self.procs.clear()


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
    workdir = Path(args.workdir).resolve()
    start = time.perf_counter()
    if prepare_demo(workdir, args.seed):
        print(f"Made the sample repository {workdir / 'sample-repo'} ({time.perf_counter() - start:.1f} s)")
    env = serve_env(workdir, args.port)
    services = Services(env, args.port)
    # SIGINT too: a process started in the background by a script inherits SIGINT ignored
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"AIRFLOW_HOME={services.home}; starting the Airflow services (~15 s)...", flush=True)
        services.migrate()
        services.start()
        services.wait_healthy(args.timeout)
        password = services.password()
        print(
            f"\nAirflow is up after {time.perf_counter() - start:.0f} s: http://127.0.0.1:{args.port}\n"
            f"  user:     {USER}\n"
            f"  password: {password}\n"
            f"  (kept in {services.home / PASSWORDS_FILE})\n"
            f"DAGs from {env['AIRFLOW__CORE__DAGS_FOLDER']}; the demo run is dc2_demo (installs into "
            f"{workdir / 'central'}).\n"
            f"Service logs: {services.logs}/<service>.log; task logs: {services.home / 'logs'}",
            flush=True,
        )
        for name, p in services.procs.items():
            print(f"  {name:<13} pid {p.pid}", flush=True)
        print("Ctrl-C stops every service.", flush=True)
        while not (dead := services.exited()):
            time.sleep(1)
        name = dead[0]
        print(
            f"dc2 serve: airflow {name} exited {services.procs[name].returncode}; stopping the others. "
            f"Its log: {services.logs / f'{name}.log'}\n{_tail(services.logs / f'{name}.log')}",
            file=sys.stderr,
        )
        return 1
    except ServeError as exc:
        print(f"dc2 serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the Airflow services...", flush=True)
        return 0
    finally:
        # a second Ctrl-C must not cut the stop short: stop() ends with SIGKILL anyway
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("Stopped every service this command started.", flush=True)

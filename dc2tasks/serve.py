"""`dc2 serve` (`make serve`): `airflow standalone` with the DC2 DAGs on this machine, for a person.

`airflow standalone` runs api-server, scheduler, dag-processor and triggerer, but also two log
servers that listen on every interface (8793, 8794), with no setting to change that. So it runs in
a private network namespace (dc2tasks.netns): its only way in is 127.0.0.1:PORT on the host,
forwarded to the api-server inside. The simple auth manager has exactly one user, whose password
`dc2 serve` generates. Everything runs in one process group, stopped and reaped by the namespace's
first process on Ctrl-C or SIGTERM. The demo run (dags/runs/demo.yaml) reads the same sample
repository `dc2 demo` makes, under the same work directory.

Other local users must not log in as that user nor read what Airflow keeps: everything runs under
umask 077, AIRFLOW_HOME is 0700 (tightened, with what is inside, when an earlier run left it wider;
refused when it is not ours), and the password is ours: written 0600 before standalone starts (so
the simple auth manager neither generates nor prints one) and filtered out of standalone's log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import IO

from dc2tasks.demo import airflow_env, make_demo_sample
from dc2tasks.netns import isolation_prefix

USER = "admin"
ROLE = "admin"
HEALTHY = ("metadatabase", "scheduler", "triggerer", "dag_processor")
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
JWT_SECRET_FILE = "jwt_secret"
PRIVATE_UMASK = 0o077
REDACTED = "<password redacted by dc2 serve>"
# what the simple auth manager prints when it generates a password (it must not: ours is there)
_GENERATED = re.compile(rb"(Password for user '[^']*': )\S+")

DESCRIPTION = """\
Start the Airflow web UI with this repository's DAGs (dags/) on http://127.0.0.1:PORT, for the
demo data run on the sample repository and a look at the other runs' DAGs.

It makes the sample repository under WORKDIR if it is not there yet (what `dc2 demo` makes:
WORKDIR/sample-repo with visits.txt, and WORKDIR/central for the installs), sets
AIRFLOW_HOME=WORKDIR/airflow (SQLite, LocalExecutor) and runs `airflow standalone` (api-server,
scheduler, dag-processor, triggerer) in a private network namespace, so that nothing it starts
listens on this machine's network; only 127.0.0.1:PORT is forwarded to its api-server. It prints
the address, the user name and its password (generated on the first start and kept in
WORKDIR/airflow/simple_auth_manager_passwords.json.generated) and where the logs are.

Other local users can read none of it: it runs under umask 077 and WORKDIR/airflow (the database,
the logs, the password) is 0700; the password is never written to a log.

A network namespace needs root, or unprivileged user namespaces (`unshare --user --net`). Where
neither is available, --share-network runs standalone directly: the UI still listens on 127.0.0.1
only, but standalone's two log servers listen on every interface (ports 8793 and 8794).

In the UI: open dc2_demo, Trigger, pick the products (the form explains each param), and follow the
run in the grid; each Slurm step's log shows its job's output (the local job backend runs the jobs
on this machine). Ctrl-C (or SIGTERM) stops every process this command started.
"""


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


class ServeError(RuntimeError):
    """A service that did not start or become healthy, or a work directory that is not private;
    the message says which and where."""


def write_private(path: Path, text: str) -> None:
    """`text` into `path`: 0600 from the moment it exists (O_EXCL on a temporary name, no link
    followed), then renamed over whatever was there."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> str | None:
    """The text of `path` if it is a regular file of ours that no one else can read; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        return fh.read()


def private_home(home: Path) -> list[Path]:
    """Make AIRFLOW_HOME 0700 (never wider for a moment: made under umask 077), or make an existing
    one and everything in it private; the paths it tightened. A home that is a symlink or another
    account's is refused: what it holds may already be someone else's."""
    old = os.umask(PRIVATE_UMASK)
    try:
        home.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old)
    st = home.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ServeError(f"{home} (AIRFLOW_HOME) is not a directory (a symlink?); remove it or choose "
                         "another --workdir")
    if st.st_uid != os.geteuid():
        raise ServeError(f"{home} (AIRFLOW_HOME) belongs to uid {st.st_uid}, not to this account "
                         f"(uid {os.geteuid()}); choose another --workdir")
    tightened: list[Path] = []
    _tighten(home, tightened)
    for top, dirs, files in os.walk(home):  # symlinks are listed, never followed
        for name in [*dirs, *files]:
            _tighten(Path(top) / name, tightened)
    return tightened


def _tighten(path: Path, tightened: list[Path]) -> None:
    try:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077, follow_symlinks=False)
            tightened.append(path)
    except OSError as exc:
        raise ServeError(f"cannot make {path} private (in AIRFLOW_HOME): {exc.strerror}") from exc


def private_home_and_password(home: Path) -> tuple[str, list[str]]:
    """`private_home`, then the UI user's password; and what was fixed, to tell the user. A password
    or JWT secret that others could read is replaced (a JWT secret lets its holder forge logins)."""
    tightened = private_home(home)
    notes = []
    if tightened:
        notes.append(f"{len(tightened)} paths under {home} were readable by others: now only by this account")
    for name in (PASSWORDS_FILE, JWT_SECRET_FILE):
        if home / name in tightened:
            (home / name).unlink()
            notes.append(f"{home / name} was readable by others: replaced with a new one")
    return user_password(home), notes


def _jwt_secret(home: Path) -> str:
    """One secret shared by every service (tasks' execution tokens and UI logins are signed with it),
    kept in AIRFLOW_HOME so a browser's login survives a restart of `dc2 serve`."""
    path = home / JWT_SECRET_FILE
    text = read_private(path)
    if not text or not text.strip():
        write_private(path, secrets.token_urlsafe(32))
        text = read_private(path) or ""
    return text.strip()


def user_password(home: Path) -> str:
    """The UI user's password: kept 0600 in the simple auth manager's passwords file, made here
    before Airflow starts so that Airflow never generates one (it would print it to its log). A new
    one when the file is not a regular file of ours that only we can read."""
    path = home / PASSWORDS_FILE
    text = read_private(path)
    try:
        password = json.loads(text)[USER] if text else None
    except (ValueError, KeyError, TypeError):
        password = None
    if isinstance(password, str) and password:
        return password
    password = secrets.token_urlsafe(16)
    write_private(path, json.dumps({USER: password}) + "\n")
    return password


def serve_env(workdir: Path, port: int) -> dict[str, str]:
    """The demo's Airflow environment (dc2tasks.demo.airflow_env) plus what running services needs."""
    env = airflow_env(workdir)
    home = Path(env["AIRFLOW_HOME"])
    env.update(
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
        "SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:{ROLE}",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / PASSWORDS_FILE),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API_AUTH__JWT_SECRET=_jwt_secret(home),
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="30",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
    )
    return env


class Standalone:
    """`airflow standalone` in its own session (and network namespace unless `isolate` is None);
    its output, less the password, in AIRFLOW_HOME/services/standalone.log."""

    def __init__(self, env: dict[str, str], port: int, isolate: list[str] | None, password: str) -> None:
        self.env = env
        self.port = port
        self.isolate = isolate
        self.password = password
        self.home = Path(env["AIRFLOW_HOME"])
        self.logs = self.home / "services"
        self.log = self.logs / "standalone.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.copier: threading.Thread | None = None
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    def start(self) -> None:
        self.logs.mkdir(mode=0o700, exist_ok=True)
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
            self.proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                pass_fds=pass_fds, start_new_session=True, umask=PRIVATE_UMASK,
            )
        finally:
            if listener is not None:
                listener.close()  # the namespace's forwarder holds it now
        assert self.proc.stdout is not None
        self.copier = threading.Thread(target=copy_redacted, args=(self.proc.stdout, self.log, self.password),
                                       name="standalone-log", daemon=True)
        self.copier.start()

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
        if self.copier is not None:
            self.copier.join(timeout=10)  # every writer is gone: the copier reads to the end


def copy_redacted(source: IO[bytes], log: Path, password: str) -> None:
    """Standalone's output, line by line, into `log` (0600, appended), with the password, and any
    password the simple auth manager says it generated, replaced by a marker."""
    secret = password.encode()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # one an earlier version left wider
    with os.fdopen(fd, "ab") as out, source:
        for line in iter(source.readline, b""):
            line = _GENERATED.sub(rb"\1" + REDACTED.encode(), line.replace(secret, REDACTED.encode()))
            out.write(line)
            out.flush()


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
    try:
        password, notes = private_home_and_password(Path(airflow_env(workdir)["AIRFLOW_HOME"]))
    except ServeError as exc:
        print(f"dc2 serve: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"dc2 serve: {note}", file=sys.stderr)
    env = serve_env(workdir, args.port)
    standalone = Standalone(env, args.port, isolate, password)
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
        assert standalone.proc is not None
        print(
            f"\nAirflow is up after {time.perf_counter() - start:.0f} s: http://127.0.0.1:{args.port}\n"
            f"  user:     {USER}\n"
            f"  password: {password}\n"
            f"  (kept in {standalone.home / PASSWORDS_FILE}, readable by this account only)\n"
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

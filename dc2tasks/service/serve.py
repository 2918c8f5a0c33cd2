"""`dc2 serve` (`make serve`): `airflow standalone` with the DC2 DAGs on this machine, for a person.

`airflow standalone` runs api-server, scheduler, dag-processor and triggerer, but also two log
servers that listen on every interface (8793, 8794), with no setting to change that. So it runs in
a private network namespace (dc2tasks.service.netns): its only way in is 127.0.0.1:PORT on the host,
forwarded to the api-server inside. The simple auth manager has exactly one user, whose password
`dc2 serve` generates. Everything runs in one process group, stopped and reaped by the namespace's
first process on Ctrl-C or SIGTERM (dc2tasks.service.standalone). The demo run (dags/runs/demo.yaml)
reads the same sample repository `dc2 demo` makes, under the same work directory.

Other local users must not log in as that user nor read what Airflow keeps: everything runs under
umask 077, AIRFLOW_HOME is 0700 (tightened, with what is inside, when an earlier run left it wider;
refused when it is not ours), and the password is ours: written 0600 before standalone starts (so
the simple auth manager neither generates nor prints one) and filtered out of standalone's log.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

from dc2tasks.private import (
    NotPrivateError,
    private_home,
    read_private,
    tightened_note,
    write_private,
)
from dc2tasks.service.airflow_env import RECOVERY_SETTINGS, airflow_env
from dc2tasks.service.demo_sample import (
    has_demo_sample,
    make_central,
    make_demo_sample,
)
from dc2tasks.service.netns import isolation_prefix
from dc2tasks.service.standalone import ServeError, Standalone, log_tail

USER = "admin"
ROLE = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
JWT_SECRET_FILE = "jwt_secret"

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


def prepare_demo(workdir: Path, seed: int) -> bool:
    """Make the sample repository unless a complete one is there; True when it was made."""
    made = not has_demo_sample(workdir)
    if made:
        make_demo_sample(workdir, seed)
    make_central(workdir)
    return made


def private_home_and_password(home: Path) -> tuple[str, list[str]]:
    """`private_home`, then the UI user's password; and what was fixed, to tell the user. A password
    or JWT secret that others could read is replaced (a JWT secret lets its holder forge logins)."""
    tightened = private_home(home)
    notes = [tightened_note(home, tightened)] if tightened else []
    for name in (PASSWORDS_FILE, JWT_SECRET_FILE):
        if home / name in tightened:
            (home / name).unlink()
            notes.append(f"{home / name} was readable by others: replaced with a new one")
    return user_password(home), notes


def _read_ours(path: Path) -> str | None:
    """The text of a secret file that only we can read; None when there is none (or it is not ours
    alone, so it must be made anew)."""
    try:
        return read_private(path)
    except (OSError, NotPrivateError):
        return None


def _jwt_secret(home: Path) -> str:
    """One secret shared by every service (tasks' execution tokens and UI logins are signed with it),
    kept in AIRFLOW_HOME so a browser's login survives a restart of `dc2 serve`."""
    path = home / JWT_SECRET_FILE
    text = _read_ours(path)
    if not text or not text.strip():
        write_private(path, secrets.token_urlsafe(32))
        text = _read_ours(path) or ""
    return text.strip()


def user_password(home: Path) -> str:
    """The UI user's password: kept 0600 in the simple auth manager's passwords file, made here
    before Airflow starts so that Airflow never generates one (it would print it to its log). A new
    one when the file is not a regular file of ours that only we can read."""
    path = home / PASSWORDS_FILE
    text = _read_ours(path)
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
    """The demo's Airflow environment (dc2tasks.service.airflow_env) plus what running services needs."""
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
        # the dc2 plugin beside the DAGs: the task links, the QA reports and the "QA report" view
        AIRFLOW__CORE__PLUGINS_FOLDER=str(Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).parent / "plugins"),
        **RECOVERY_SETTINGS,
    )
    return env


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


def network_isolation(port: int, share_network: bool) -> list[str] | None:
    """The `unshare` prefix standalone runs under (None with --share-network); ServeError when the
    port is taken or no namespace can be made, saying what to do instead."""
    if port_in_use(port):
        raise ServeError(f"127.0.0.1:{port} is in use (another Airflow?); choose one with --port")
    if share_network:
        return None
    isolate, why_not = isolation_prefix()
    if isolate is None:
        raise ServeError(
            f"cannot make a private network namespace here ({why_not}).\n"
            "airflow standalone's log servers would listen on every interface (ports 8793 and "
            "8794); run `dc2 serve --share-network` to accept that."
        )
    return isolate


def run(args: argparse.Namespace) -> int:
    try:
        isolate = network_isolation(args.port, args.share_network)
        workdir = Path(args.workdir).resolve()
        start = time.perf_counter()
        if prepare_demo(workdir, args.seed):
            made_in = time.perf_counter() - start
            print(f"Made the sample repository {workdir / 'sample-repo'} ({made_in:.1f} s)")
        password, notes = private_home_and_password(Path(airflow_env(workdir)["AIRFLOW_HOME"]))
    except (ServeError, NotPrivateError) as exc:
        print(f"dc2 serve: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"dc2 serve: {note}", file=sys.stderr)
    standalone = Standalone(serve_env(workdir, args.port), args.port, isolate, password)
    return serve_until_stopped(standalone, workdir, start, args.timeout)


def serve_until_stopped(standalone: Standalone, workdir: Path, start: float, timeout: float) -> int:
    """Start standalone, say where it is and how to log in, and keep it up until Ctrl-C or SIGTERM
    (0) or until it exits by itself (1); every process it started is stopped either way."""
    # SIGINT too: a process started in the background by a script inherits SIGINT ignored
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        where = "in a private network namespace" if standalone.isolate else "sharing this machine's network"
        print(f"AIRFLOW_HOME={standalone.home}; starting airflow standalone {where} (~20 s)...", flush=True)
        if standalone.isolate is None:
            print("dc2 serve: --share-network: its log servers listen on every interface (8793, 8794)",
                  file=sys.stderr, flush=True)
        standalone.start()
        standalone.wait_healthy(timeout)
        print(_up_message(standalone, workdir, time.perf_counter() - start), flush=True)
        print("Ctrl-C stops every process.", flush=True)
        while not standalone.exited():
            time.sleep(1)
        assert standalone.proc is not None
        print(
            f"dc2 serve: airflow standalone exited {standalone.proc.returncode}. Its log: {standalone.log}\n"
            f"{log_tail(standalone.log)}",
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


def _up_message(standalone: Standalone, workdir: Path, seconds: float) -> str:
    assert standalone.proc is not None
    return (
        f"\nAirflow is up after {seconds:.0f} s: http://127.0.0.1:{standalone.port}\n"
        f"  user:     {USER}\n"
        f"  password: {standalone.password}\n"
        f"  (kept in {standalone.home / PASSWORDS_FILE}, readable by this account only)\n"
        f"DAGs from {standalone.env['AIRFLOW__CORE__DAGS_FOLDER']}; the demo run is dc2_demo (installs into "
        f"{workdir / 'central'}).\n"
        f"airflow standalone's log: {standalone.log}; task logs: {standalone.home / 'logs'}\n"
        f"  process group {standalone.proc.pid}"
    )

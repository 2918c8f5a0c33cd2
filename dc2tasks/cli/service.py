"""`dc2 demo` and `dc2 serve`: the local service, a sample run through Airflow on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from dc2tasks.cli.args import add_command, add_jobs
from dc2tasks.service import serve
from dc2tasks.service.demo_sample import DEMO_SEED, DEMO_WORKDIR


def _cmd_demo(args: argparse.Namespace) -> int:
    from dc2tasks.service.demo import run_demo  # numpy, pandas, GCRCatalogs: only when asked for

    return run_demo(args.workdir, seed=args.seed, jobs=args.jobs, airflow=not args.no_airflow)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port is an integer 1-65535, not {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port is an integer 1-65535, not {text!r}")
    return value


def _demo(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        help="a sample repository through the demo run's Airflow DAG: every product, installed, checked",
    )
    p.add_argument("--workdir", type=Path, default=DEMO_WORKDIR, help="where everything goes")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="sample repository seed")
    add_jobs(p, default=2, help="parallel processes")
    p.add_argument(
        "--no-airflow",
        action="store_true",
        help="run the product steps in this process (no Airflow, no install)",
    )
    p.set_defaults(func=_cmd_demo)


def _serve(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "serve",
        help="the Airflow UI with the DC2 DAGs on 127.0.0.1 (demo run ready to trigger)",
        description=serve.DESCRIPTION,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEMO_WORKDIR,
        help="where the sample repository, work files, installs and Airflow home go",
    )
    p.add_argument("--port", type=_port, default=8080, help="api-server port on 127.0.0.1")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="sample repository seed, if it must be made")
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for Airflow to be healthy")
    p.add_argument(
        "--share-network",
        action="store_true",
        help="no private network namespace: standalone's log servers listen on every interface",
    )
    p.set_defaults(func=serve.run)


def register(sub: argparse._SubParsersAction) -> None:
    _demo(sub)
    _serve(sub)

"""`dc2 demo` and `dc2 serve`: the local service, a sample run through Airflow on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from dc2tasks.cli.args import add_command, add_jobs


def _cmd_demo(args: argparse.Namespace) -> int:
    from dc2tasks.service.demo import run_demo

    return run_demo(args.workdir, seed=args.seed, jobs=args.jobs, airflow=not args.no_airflow)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        help="a sample repository through the demo run's Airflow DAG: every product, installed, checked",
    )
    p.add_argument("--workdir", type=Path, default=Path("demo-output"), help="where everything goes")
    p.add_argument("--seed", type=int, default=2018, help="sample repository seed")
    add_jobs(p, default=2, help="parallel processes")
    p.add_argument(
        "--no-airflow",
        action="store_true",
        help="run the product steps in this process (no Airflow, no install)",
    )
    p.set_defaults(func=_cmd_demo)

    from dc2tasks.service.serve import add_parser as add_serve_parser

    add_serve_parser(sub)

"""`dc2 slurm sweep`: the orphan sweep for a person at a terminal.

The sweep reads Airflow's metadata database and `dc2` never imports Airflow (docs/architecture.md),
so the subcommand runs the sweep's own module (`python -m dc2tasks.airflow.sweep`, also installed as
`dc2-sweep`) as a child process with the same interpreter and arguments, and hands its output and
exit code back unchanged.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from dc2tasks.cli.args import add_command

SWEEP_MODULE = "dc2tasks.airflow.sweep"

SWEEP_DESCRIPTION = """\
Cancel this deployment's Slurm jobs on one cluster that no task instance waits for any more: one
squeue lists the jobs named `dc2_*` and signed with the deployment's job token; each is matched by
its deterministic name to its task instance in Airflow's metadata database, and cancelled when the
task has ended, its DAG run is gone, or a later try recorded another job. A task still running,
deferred, queued or up for retry keeps its job. Each cancellation is logged with the job, its task
and why. The `dc2_sweep` DAG does the same every 10 minutes on every cluster the run files use.

It needs the Airflow service's environment: AIRFLOW_HOME (the metadata database and the
connections), and for the local backend DC2_LOCAL_SLURM_DIR, as the scheduler has them. It runs
`python -m dc2tasks.airflow.sweep` (also `dc2-sweep`) with these arguments; its exit code is this
command's.

  dc2 slurm sweep --dry-run                       # the local backend: what would be cancelled, and why
  dc2 slurm sweep --conn nersc_producer --grace 300
"""


def sweep_argv(args: argparse.Namespace) -> list[str]:
    """The sweep module's command line for these arguments."""
    argv = [sys.executable, "-m", SWEEP_MODULE]
    if args.grace is not None:
        argv += ["--grace", repr(args.grace)]
    if args.conn:
        argv += ["--conn", args.conn]
    if args.dry_run:
        argv.append("--dry-run")
    if args.json:
        argv.append("--json")
    return argv


def _cmd_sweep(args: argparse.Namespace) -> int:
    return subprocess.run(sweep_argv(args), check=False).returncode


def run(args: argparse.Namespace) -> int:
    return {"sweep": _cmd_sweep}[args.slurm_command](args)


def register(sub: argparse._SubParsersAction) -> None:
    slurm = add_command(sub, "slurm", help="this deployment's Slurm jobs: the orphan sweep")
    commands = slurm.add_subparsers(dest="slurm_command", metavar="COMMAND", required=True)
    p = add_command(commands, "sweep", help="cancel the jobs no task instance waits for (needs AIRFLOW_HOME)",
                    description=SWEEP_DESCRIPTION)
    p.add_argument("--conn", default=None,
                   help="the cluster's Airflow connection id (default: the local backend)")
    p.add_argument("--grace", type=float, default=None,
                   help="leave jobs submitted less than this many seconds ago (default: the sweep's, "
                        "as `dc2-sweep --help` shows)")
    p.add_argument("--dry-run", action="store_true", help="log what would be cancelled; cancel nothing")
    p.add_argument("--json", action="store_true", help="print the cancellations as one JSON list, last")
    slurm.set_defaults(func=run)

"""`dc2 run-config validate|show` and `dc2 reruns`.

`run(args)` does the work. An invalid run file exits 2 with one line per problem, each naming the
file and the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dc2tasks import names
from dc2tasks.cli.args import add_command
from dc2tasks.products.errors import InputError
from dc2tasks.runs import rerun_facts

RUN_CONFIG_DESCRIPTION = """\
Check run files (dags/runs/<run>.yaml) the way the DAG factory reads them.

  dc2 run-config validate dags/runs              every run file of the directory
  dc2 run-config validate dags/runs/run1.2i.yaml one file
  dc2 run-config show dags/runs/demo.yaml        the resolved settings, the config hash, the params

Every problem is reported as FILE: FIELD: MESSAGE; exit code 2 if any file is invalid.
"""

RERUNS_DESCRIPTION = """\
What the rerun watcher sees in a Gen2 repository's rerun/ directory, read without following links.

  dc2 reruns REPO                        each entry: owner, kind, whether it has a repositoryCfg.yaml
  dc2 reruns REPO --facts [--marker F ...] the watcher's JSON listing (it runs this on the login node):
                                         per rerun its owner, link-ness, marker, newest change, entry
                                         count, listing digest, owners inside, missing products
  dc2 reruns --state S --run R --accept X  after reprocessing a rerun the watcher reported as changed:
                                         its next ready listing becomes what was processed
"""


def register(sub: argparse._SubParsersAction) -> None:
    _register_run_config(sub)
    _register_reruns(sub)


def _register_run_config(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "run-config",
        help="validate or show run files (dags/runs/*.yaml)",
        description=RUN_CONFIG_DESCRIPTION,
    )
    actions = p.add_subparsers(dest="run_config_action", required=True, metavar="{validate,show}")
    v = add_command(actions, "validate", help="check run files or directories of them")
    v.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="run file or directory")
    s = add_command(actions, "show", help="print a run's resolved settings and hash")
    s.add_argument("path", type=Path, metavar="FILE", help="run file")
    s.add_argument("--params", action="store_true", help="also print the trigger params' JSON schema")
    p.set_defaults(func=run, dc2_runs_command="run-config")


def _register_reruns(sub: argparse._SubParsersAction) -> None:
    r = add_command(
        sub,
        "reruns",
        help="list the reruns of a repository (only the new ones with --state)",
        description=RERUNS_DESCRIPTION,
    )
    r.add_argument("repository", type=Path, nargs="?", metavar="REPO", help="Gen2 repository root")
    r.add_argument("--facts", action="store_true", help="print the watcher's JSON listing")
    rerun_facts.add_arguments(r)
    r.add_argument("--state", type=Path, help="the watcher's state ($AIRFLOW_HOME/dc2-rerun-state.json)")
    r.add_argument("--run", type=names.RUN.arg_type, help="run name the state is kept for (with --state)")
    r.add_argument("--accept", type=names.RERUN.arg_type, metavar="RERUN",
                   help="take RERUN's next ready content as processed (with --state and --run)")
    r.set_defaults(func=run, dc2_runs_command="reruns")


def _validate(paths: list[Path]) -> int:
    from dc2tasks.runs.loader import RunConfigError, load_run_config, load_run_dir

    bad = 0
    for path in paths:
        if path.is_dir():
            configs, errors = load_run_dir(path)
            for name, config in sorted(configs.items()):
                print(
                    f"ok: {name} ({config.backend}, {len(config.tracts)} tracts, "
                    f"{', '.join(config.products)})"
                )
            for error in errors.values():
                print(error, file=sys.stderr)
            bad += len(errors)
            continue
        try:
            config = load_run_config(path)
        except RunConfigError as error:
            print(error, file=sys.stderr)
            bad += 1
        else:
            print(f"ok: {config.name} ({path})")
    return 2 if bad else 0


def _show(path: Path, with_params: bool) -> int:
    from dc2tasks.runs.loader import config_hash, load_run_config
    from dc2tasks.runs.params import params_json_schema

    config = load_run_config(path)
    out = {"config_hash": config_hash(config), "run": config.model_dump(mode="json")}
    if with_params:
        out["params"] = params_json_schema(config)
    print(json.dumps(out, indent=1))
    return 0


def _reruns(args: argparse.Namespace) -> int:
    from dc2tasks.runs.rerun_facts import gather, request_from_args
    from dc2tasks.runs.reruns import JsonRerunStore

    if args.accept is not None:
        if args.state is None or not args.run:
            raise InputError("--accept needs --state and --run")
        if not JsonRerunStore(args.state).accept(args.run, args.accept):
            raise InputError(f"{args.state}: run {args.run} has no processed rerun {args.accept}")
        print(f"run {args.run}: rerun {args.accept} accepted; its next ready listing is the new baseline")
        return 0
    if args.repository is None:
        raise InputError("REPO is needed (except with --accept)")
    listing = gather(args.repository, request_from_args(args))
    if args.facts:
        print(listing.model_dump_json())
        return 0
    print(f"{args.repository}/rerun: {listing.rerun_dir} (listed as {listing.account})")
    for e in listing.reruns:
        print(f"{e.name}\t{e.kind}\t{e.owner}\t{'repositoryCfg.yaml' if e.cfg else '-'}")
    for name in listing.bad_names:
        print(f"skipped (name not allowed): {name!r}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    command = args.dc2_runs_command
    try:
        if command == "reruns":
            return _reruns(args)
        if args.run_config_action == "validate":
            return _validate(args.paths)
        return _show(args.path, args.params)
    except InputError as exc:
        print(f"dc2 {command}: error: {exc}", file=sys.stderr)
        return 2

"""`dc2 qa`: a made product's checks and plots, its report, and the verdict as an exit code."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.cli.args import add_command, nonneg_int
from dc2tasks.products.qa.core import FAILED_EXIT, REPORT_FILE, THRESHOLDS, QaReport
from dc2tasks.products.qa.run import make_inputs, read_json_argument, report_files, run_qa

DESCRIPTION = f"""\
Checks a product's files before it is installed (rows per patch against what they were made from,
ids unique, no all-NaN or constant DPDD column, one schema, every planned tract and patch present,
magnitudes in range and, with --truth, residuals against the truth tables) and draws its plots.
Writes QA_DIR/qa.json, QA_DIR/{REPORT_FILE} and QA_DIR/plots/*.png; when QA_DIR is inside
PRODUCT_DIR and PRODUCT_DIR has a manifest, the report's files are added to it, so `dc2 install`
copies them with the product.

Prints each failed or warned check to stderr and a summary line to stdout (--json: qa.json).
Exit 0 when the report is written; {FAILED_EXIT} when a check failed and --enforce is given; 2 for bad input.
Thresholds (--thresholds '{{"mag_max": 30}}' or a JSON file; README "Quality checks"):
{textwrap.fill(", ".join(THRESHOLDS), 100)}.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "qa", help="check a made product and write its QA report", description=DESCRIPTION)
    p.add_argument("directory", type=Path, metavar="PRODUCT_DIR", help="the product's directory")
    p.add_argument(
        "--product",
        required=True,
        choices=[n for n in CATALOGUE.names if CATALOGUE[n].qa],
        help="which product of the directory",
    )
    p.add_argument(
        "--against",
        type=Path,
        metavar="INVENTORY_JSON",
        help="`dc2 inventory -o` report: planned units and the inputs' rows",
    )
    p.add_argument("--truth", type=Path, metavar="DIR", help="truth tables (a sample's truth/ directory)")
    p.add_argument("--thresholds", metavar="JSON_OR_FILE", help="threshold overrides")
    p.add_argument("--tracts", type=nonneg_int, nargs="+", help="planned tracts")
    p.add_argument("--visits", type=nonneg_int, nargs="+", help="planned visits")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="QA_DIR",
        help="report directory (default PRODUCT_DIR/qa/PRODUCT)",
    )
    p.add_argument("--enforce", action="store_true", help=f"exit {FAILED_EXIT} when a check failed")
    p.add_argument("--json", action="store_true", help="print qa.json, not the summary line")
    p.set_defaults(func=run)


def _record_in_manifest(directory: Path, out: Path, report: QaReport) -> bool:
    """Add the report's files to the product's manifest when the report is inside the product."""
    # here: dc2tasks.install imports the whole installer (a fifth of a second for every qa job)
    from dc2tasks.install.manifest import MANIFEST_NAME, append_files

    root, out = directory.resolve(), out.resolve()
    if not out.is_relative_to(root) or not (root / MANIFEST_NAME).is_file():
        return False
    folder = out.relative_to(root).as_posix()
    append_files(root, [f"{folder}/{name}" for name in report_files(report)], under=folder)
    return True


def run(args: argparse.Namespace) -> int:
    inputs = make_inputs(
        args.directory,
        args.product,
        out=args.output,
        thresholds=read_json_argument(args.thresholds, "--thresholds") if args.thresholds else None,
        inventory=read_json_argument(str(args.against), "--against") if args.against else None,
        truth=args.truth,
        tracts=args.tracts or (),
        visits=args.visits or (),
    )
    report = run_qa(inputs)
    _record_in_manifest(args.directory, inputs.out, report)
    for check in (*report.failures, *report.warnings):
        print(
            f"qa {report.product}: {check.verdict.upper()} {check.name}: {check.value} "
            f"(threshold {check.threshold}) {check.detail}".rstrip(),
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=1, default=str))
    else:
        print(
            f"qa {report.product}: {report.verdict} ({len(report.checks)} checks, {len(report.failures)} "
            f"failed, {len(report.warnings)} warnings); report {inputs.out / REPORT_FILE}"
        )
    return FAILED_EXIT if args.enforce and report.failures else 0

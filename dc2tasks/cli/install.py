"""`dc2 manifest` (producer side) and `dc2 install` (collaboration account side).

`run(args)` does the work. Bad input exits 2 with a message naming the file or option; nothing
installed changes on any error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dc2tasks import names
from dc2tasks.cli.args import add_command
from dc2tasks.install.policy import CENTRAL_MODES, DEFAULT_MODE
from dc2tasks.install.qa_gate import DEFAULT_QA_MODE, QA_MODES
from dc2tasks.products.errors import InputError

INSTALL_DESCRIPTION = """\
Install a product directory into the central directory, safely (replaces `chgrp -R; collabsu;
cp -pr`). Run it on the machine that holds the central directory, as the account that owns it.

  1. copy every file listed in SOURCE/manifest.json into CENTRAL/PRODUCT/.staging-* (same disk)
  2. verify the file count, each size and sha256 against the manifest
  3. load every GCRCatalogs config in SOURCE/catalog_configs/ against the staged files
  4. chgrp -R GROUP, chmod by --mode: files 0440 (group) or 0444 (world), directories 0550 / 0555
     (2550 / 2555 with --group-managed)
  5. rename to CENTRAL/PRODUCT/versions/VERSION and switch CENTRAL/PRODUCT/current to it atomically
  6. write CENTRAL/PRODUCT/catalog_configs/*.yaml with base_dir = CENTRAL/PRODUCT/current

Before anything, the quality gate: every QA report of the product (SOURCE/qa/<product>/qa.json, made
by `dc2 qa` and listed in the manifest) is read; with --qa-mode enforce (the default) a failed check
refuses the install, naming the product and its failed checks; warn and approve install it and
record the failures they override (and who approved) in provenance.json.

Any failure before step 5 (checksum, missing file, config that does not load, chgrp refused, disk
full) removes the staging directory: what was installed stays as it was. The previous version is
kept; an install of content identical to the current version does nothing. provenance.json (inputs,
run config hash, job records, checksums, who/when/where) is installed with each version.

Nothing it did not make is trusted: it runs under umask 077, refuses a central or product directory,
versions/ or catalog_configs/ that is a symlink, owned by another account or writable by others
(by the group only with --group-managed, sticky bit, setgid and GROUP), never follows a link in
the product tree or among the sources, and locks with a 0600 file only this account can open.
"""

MANIFEST_DESCRIPTION = """\
Prepare a product directory for install, as the producer: copy the catalog configs into
DIR/catalog_configs/, write DIR/provenance.json (run, config hash, inputs, job records) when given,
write DIR/manifest.json (every file's name, size and sha256), and open the files to GROUP (chgrp -R,
chmod -R g+rX) so the collaboration account can read them.
"""


def register(sub: argparse._SubParsersAction) -> None:
    _register_install(sub)
    _register_manifest(sub)


def _register_install(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "install",
        help="install a product into the central directory (staged, verified, atomic, versioned)",
        description=INSTALL_DESCRIPTION,
    )
    p.add_argument("source", type=Path, metavar="SOURCE", help="the product directory (with manifest.json)")
    p.add_argument("--central", type=Path, required=True, help="the central directory (must exist)")
    # checked (names.PRODUCT, fullmatch) by ProductLayout before anything is read or written
    p.add_argument("--product", required=True, help="product name: CENTRAL/PRODUCT (a-z, 0-9, _)")
    p.add_argument("--group", help="group of the installed files (default: this account's primary group)")
    p.add_argument("--manifest", type=Path, help="the producer's manifest (default SOURCE/manifest.json)")
    p.add_argument(
        "--catalog-base-dir",
        help="base_dir written into installed configs (default CENTRAL/PRODUCT/current; "
        "e.g. ^/DC2-prod/Run1.2i/dpdd/object/current)",
    )
    p.add_argument(
        "--jobs", type=Path, help="JSON list of job records (sacct fields) for provenance.json; - reads stdin"
    )
    p.add_argument(
        "--mode",
        choices=CENTRAL_MODES,
        default=DEFAULT_MODE,
        help="who reads installed files: group (0440/0550) or world (0444/0555, as the seed's area)",
    )
    p.add_argument(
        "--group-managed",
        action="store_true",
        help="the central tree is shared by GROUP: accept group-writable directories with sticky+setgid",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another install of the product to finish (default: do not wait)",
    )
    p.add_argument("--dry-run", action="store_true", help="check write and chgrp permission; change nothing")
    p.add_argument("--force", action="store_true", help="install a new version even if identical to current")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip loading the catalog configs (not advised; HDF5 files are still scanned)",
    )
    p.add_argument(
        "--qa-mode",
        choices=QA_MODES,
        default=DEFAULT_QA_MODE,
        help="enforce: a failed QA check refuses the install; warn: install and record the failures; "
        "approve: as warn, with --approved-by",
    )
    p.add_argument(
        "--approved-by", metavar="USER", help="who approved the QA reports (with --qa-mode approve)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON (for the DAG)")
    p.set_defaults(func=run, dc2_install_command="install")


def _register_manifest(sub: argparse._SubParsersAction) -> None:
    m = add_command(
        sub,
        "manifest",
        help="checksum a product directory into manifest.json, ready for `dc2 install`",
        description=MANIFEST_DESCRIPTION,
    )
    m.add_argument("directory", type=Path, metavar="DIR", help="the product directory")
    m.add_argument(
        "--catalog-config",
        type=Path,
        action="append",
        default=[],
        metavar="YAML",
        help="a GCRCatalogs config of this product (repeat for each)",
    )
    m.add_argument(
        "--group", help="chgrp -R the files to this group (spec: lsst) so the installer reads them"
    )
    m.add_argument("--run-config", type=Path, help="the run file: its name, hash and inputs go to provenance")
    m.add_argument("--run", type=names.RUN.arg_type, help="run name, when the run file is elsewhere")
    m.add_argument("--run-config-hash", help="the run file's hash (dc2 run-config show), with --run")
    m.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input for provenance.json, e.g. repository=/path rerun=coadd-v4 (repeat)",
    )
    m.add_argument(
        "--jobs", type=Path, help="JSON list of job records (sacct fields) for provenance.json; - reads stdin"
    )
    m.add_argument(
        "--inventory", type=Path, help="the run's `dc2 inventory` report (JSON) for provenance.json"
    )
    m.set_defaults(func=run, dc2_install_command="manifest")


MAX_INVENTORY_BYTES = 64 << 20  # its lists are capped: a report this large is not one


def _read_inventory(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        if path.stat().st_size > MAX_INVENTORY_BYTES:
            raise InputError(f"--inventory {path}: over {MAX_INVENTORY_BYTES >> 20} MiB, not a report")
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"--inventory {path}: cannot read the inventory's JSON report: {exc}") from None
    if not isinstance(report, dict) or not isinstance(report.get("products"), dict):
        raise InputError(f"--inventory {path}: not a `dc2 inventory` report (no 'products' mapping)")
    return report


def _read_jobs(path: Path | None) -> list[Any]:
    if path is None:
        return []
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        jobs = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"--jobs {path}: cannot read a JSON list of job records: {exc}") from None
    if not isinstance(jobs, list):
        raise InputError(f"--jobs {path}: expected a JSON list of job records")
    return jobs


def _install(args: argparse.Namespace) -> int:
    from dc2tasks.install.check import gcr_check, hdf5_scan
    from dc2tasks.install.install import install_product

    result = install_product(
        args.source,
        args.central,
        args.product,
        args.group,
        args.manifest,
        catalog_base_dir=args.catalog_base_dir,
        check=hdf5_scan if args.no_check else gcr_check,  # readers open these files: always scanned
        jobs=_read_jobs(args.jobs),
        force=args.force,
        dry_run=args.dry_run,
        mode=args.mode,
        group_managed=args.group_managed,
        lock_timeout=args.lock_timeout,
        qa_mode=args.qa_mode,
        approved_by=args.approved_by,
    )
    if args.json:
        out = {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()}
        out["catalog_configs"] = [str(p) for p in result.catalog_configs]
        print(json.dumps(out, indent=1))
    else:
        print(result.summary())
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from dc2tasks.install.producer import prepare_product

    run, config_hash = args.run, args.run_config_hash
    inputs: dict[str, Any] = {}
    for item in args.input:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--input {item!r}: expected KEY=VALUE")
        inputs[key] = value
    if args.run_config is not None:
        from dc2tasks.runs.loader import config_hash as hash_of
        from dc2tasks.runs.loader import load_run_config

        config = load_run_config(args.run_config)
        run, config_hash = config.name, hash_of(config)
        inputs = {**config.inputs(config.rerun), "tracts": config.tracts, **inputs}
    manifest = prepare_product(
        args.directory,
        configs=args.catalog_config,
        group=args.group,
        run=run,
        run_config_hash=config_hash,
        inputs=inputs,
        jobs=_read_jobs(args.jobs),
        inventory=_read_inventory(args.inventory),
    )
    print(
        f"{args.directory / 'manifest.json'}: {len(manifest.files)} files, {manifest.total_bytes} bytes, "
        f"content sha256 {manifest.content_sha256}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    command = args.dc2_install_command
    try:
        return _install(args) if command == "install" else _manifest(args)
    except InputError as exc:
        print(f"dc2 {command}: error: {exc}", file=sys.stderr)
        return 2

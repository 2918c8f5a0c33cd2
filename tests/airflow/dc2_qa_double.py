"""A stand-in for `dc2 qa` (the interface of issue #13) until the real command is merged: it writes
a one-check report (`max_missing_units`: 0 units missing, against the given threshold), adds the
report to the product's manifest as `dc2 qa` does, and exits FAILED_EXIT with --enforce when the
check fails. `qa_double.py` uses it only when the installed `dc2` has no `qa` subcommand."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from dc2tasks.install.manifest import MANIFEST_NAME, FileEntry, manifest_from_json
from dc2tasks.products.qa.core import FAILED_EXIT, QA_DIR, REPORT_FILE, CheckResult, QaReport, write_qa_json


def main(argv: list[str]) -> int:
    if argv == ["--version"]:
        print("dc2 qa test double")
        return 0
    p = argparse.ArgumentParser(prog="dc2")
    p.add_argument("command", choices=["qa"])
    p.add_argument("directory", type=Path)
    p.add_argument("--product", required=True)
    p.add_argument("--thresholds", default="{}")
    p.add_argument("--enforce", action="store_true")
    p.add_argument("--against")
    p.add_argument("--truth")
    p.add_argument("--tracts", nargs="*")
    p.add_argument("--visits", nargs="*")
    args = p.parse_args(argv)
    limit = float(json.loads(args.thresholds).get("max_missing_units", 0))
    verdict = "fail" if 0 > limit else "pass"
    out = args.directory / QA_DIR / args.product
    out.mkdir(parents=True, exist_ok=True)
    report = QaReport(args.product, str(args.directory),
                      [CheckResult("max_missing_units", verdict, 0, f"<= {limit:g}", "")])
    write_qa_json(report, out)
    (out / REPORT_FILE).write_text(f"<html><body>{args.product}: {verdict}</body></html>\n")
    _add_to_manifest(args.directory, [out / "qa.json", out / REPORT_FILE])
    print(f"qa {args.product}: {verdict} (1 checks); report {out / REPORT_FILE}")
    return FAILED_EXIT if verdict == "fail" and args.enforce else 0


def _add_to_manifest(directory: Path, files: list[Path]) -> None:
    path = directory / MANIFEST_NAME
    data = json.loads(path.read_text())
    manifest = manifest_from_json(data, str(path))
    names = {f.relative_to(directory).as_posix() for f in files}
    entries = [e for e in manifest.files if e.name not in names]
    for f in files:
        entries.append(FileEntry(f.relative_to(directory).as_posix(), f.stat().st_size,
                                 hashlib.sha256(f.read_bytes()).hexdigest()))
    data["files"] = [{"name": e.name, "size": e.size, "sha256": e.sha256} for e in entries]
    data["content_sha256"] = type(manifest)(tuple(entries)).content_sha256
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""dc2tasks.slurm must not import Airflow (DESIGN.md layers): it runs on login and compute nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dc2tasks.slurm

PACKAGE = Path(dc2tasks.slurm.__file__).parent


def test_no_airflow_import_anywhere_under_slurm() -> None:
    modules = sorted(
        ".".join(("dc2tasks", "slurm", *p.relative_to(PACKAGE).with_suffix("").parts))
        .removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
    )
    assert "dc2tasks.slurm.transports.ssh" in modules and "dc2tasks.slurm.localslurm.runner" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for p in PACKAGE.rglob("*.py"):
        text = p.read_text()
        assert "import airflow" not in text and "from airflow" not in text, p

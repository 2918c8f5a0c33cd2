"""dc2tasks.runs and dc2tasks.install never import Airflow: the DAGs call them, not the other way."""

from __future__ import annotations

import subprocess
import sys


def test_no_airflow_import():
    code = (
        "import sys\n"
        "import dc2tasks.runs, dc2tasks.cli.runs, dc2tasks.runs.reruns, dc2tasks.runs.params\n"
        "import dc2tasks.install, dc2tasks.cli.install, dc2tasks.install.dry_run, dc2tasks.install.producer\n"
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(len(bad), bad[:5])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "0 []"

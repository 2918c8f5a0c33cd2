"""Which `dc2 qa` the DAG tests' qa jobs run: the real one when the installed `dc2` has it, else the
test double `dc2_qa_double.py` (until the `dc2 qa` command of issue #13 is merged)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

DC2 = Path(sys.executable).with_name("dc2")
DOUBLE = Path(__file__).resolve().with_name("dc2_qa_double.py")


def has_real_qa() -> bool:
    r = subprocess.run([str(DC2), "qa", "--help"], capture_output=True, text=True, check=False)
    return r.returncode == 0


def use_qa_double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> bool:
    """Point the qa jobs at the double when needed (tasks run in this process under dag.test());
    True when the double is used."""
    if has_real_qa():
        return False
    script = tmp_path / "dc2-qa-double"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {DOUBLE} \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("dc2tasks.airflow.operators.qa.dc2_command", lambda config: str(script))
    return True

"""`dc2 slurm sweep`: the orphan sweep's module run as a child (dc2 never imports Airflow). Its dry run
against a real metadata database and local jobs is in tests/airflow/test_sweep.py."""

from __future__ import annotations

import sys

import pytest

from dc2tasks.cli import build_parser, main
from dc2tasks.cli.slurm import SWEEP_MODULE, sweep_argv


def test_help_says_it_needs_the_service_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["slurm", "sweep", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "usage: dc2 slurm sweep [-h] [--conn CONN] [--grace GRACE] [--dry-run] [--json]" in text
    assert "AIRFLOW_HOME" in text and "DC2_LOCAL_SLURM_DIR" in text
    assert "python -m dc2tasks.airflow.sweep" in text


def test_the_arguments_go_to_the_sweep_module_unchanged() -> None:
    parse = build_parser().parse_args
    every = parse(["slurm", "sweep", "--dry-run", "--grace", "300", "--conn", "nersc_producer", "--json"])
    assert sweep_argv(every) == [sys.executable, "-m", SWEEP_MODULE, "--grace", "300.0",
                                 "--conn", "nersc_producer", "--dry-run", "--json"]
    assert sweep_argv(parse(["slurm", "sweep"])) == [sys.executable, "-m", SWEEP_MODULE]  # its defaults
    with pytest.raises(SystemExit):
        parse(["slurm", "sweep", "--grace", "soon"])

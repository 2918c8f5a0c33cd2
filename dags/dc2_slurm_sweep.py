"""The orphan sweep: every few minutes, cancel this deployment's Slurm jobs no task waits for
(one task per cluster the run files in runs/ use; schedule from $DC2_SLURM_SWEEP_SCHEDULE, default
every 5 minutes; see dc2tasks/airflow/sweep.py)."""

from pathlib import Path

from dc2tasks.airflow.sweep_dag import build_sweep_dag

dag = build_sweep_dag(Path(__file__).with_name("runs"))

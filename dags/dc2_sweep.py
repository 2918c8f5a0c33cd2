"""The orphan sweep: every 10 minutes, cancels this deployment's Slurm jobs that no task instance
waits for any more, on every cluster the run files in runs/ submit jobs to (trigger it with
`dry_run` to see what it would cancel; see dc2tasks/airflow/sweep_dag.py)."""

from pathlib import Path

from dc2tasks.airflow.sweep_dag import build_sweep_dag

dag = build_sweep_dag(Path(__file__).with_name("runs"))

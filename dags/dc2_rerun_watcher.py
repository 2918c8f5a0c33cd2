"""The rerun watcher: triggers each watched run's DAG once per new rerun of its repository
(run files in runs/ with `watch_reruns: true`; schedule from $DC2_RERUN_WATCH_SCHEDULE, default
hourly; see dc2tasks/airflow/rerun_dag.py)."""

from pathlib import Path

from dc2tasks.airflow.rerun_dag import build_watcher_dag

dag = build_watcher_dag(Path(__file__).with_name("runs"))

"""The DAG of the data run in runs/run1.2p_v4_archive.yaml (one DAG file per run file, so an invalid
run file is this file's import error in the Airflow UI and every other run still loads)."""

from pathlib import Path

from dc2tasks.airflow.run_dag import dag_from_run_file

dag = dag_from_run_file(Path(__file__).with_name("runs") / "run1.2p_v4_archive.yaml")

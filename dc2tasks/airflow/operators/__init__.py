from dc2tasks.airflow.operators.slurm import SlurmJobOperator

__all__ = ["SlurmJobOperator"]

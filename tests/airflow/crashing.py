"""An operator that dies between sbatch and recording the job id, once (for the crash test)."""

from __future__ import annotations

from dc2tasks.airflow.operators.slurm import SlurmJobOperator

CRASHED: list[str] = []


class CrashAfterSubmitOperator(SlurmJobOperator):
    def _after_submit(self, job_id: str) -> None:
        if not CRASHED:
            CRASHED.append(job_id)
            raise RuntimeError(f"simulated crash right after sbatch accepted job {job_id}")

"""The quality gate's tasks: one `dc2 qa` Slurm job per product (`qa.<product>`), and the approval a
person gives in the UI before install when the run's gate is `approve`.

A failed check is a verdict on the data, not a failure of the job: `dc2 qa --enforce` exits with
FAILED_EXIT, and the task then fails for good (AirflowFailException: a retry would check the same
files again), naming each failed check with its value and threshold in the task log. Any other bad
end of the job (a crash, a TIMEOUT, an OUT_OF_MEMORY) is a Slurm step's failure like any other and
retried as SlurmJobOperator retries. Either way the report's summary goes to XCom `qa_report`.

The approval is Airflow 3.3's human-in-the-loop ApprovalOperator: it parks the task in
`awaiting_input` (no worker slot, no trigger) until someone answers in Required actions or through
the REST API; its body shows every product's verdict, failed checks and report directory. Nobody
answering is an answer too: after the run file's `qa.approve_timeout` (default a week) the
scheduler's timeout sweep takes the default option, Reject, so a forgotten run neither waits for
ever nor installs; the task log says so and how to be asked again.
"""

from __future__ import annotations

import posixpath
from typing import Any

from airflow.providers.standard.exceptions import HITLRejectException
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dc2tasks.airflow.hooks import SlurmHook
from dc2tasks.airflow.links import QA_REPORT_KEY
from dc2tasks.airflow.operators.step import PLAN_TASK, RunStepOperator, dc2_command
from dc2tasks.airflow.outcome import JobReport
from dc2tasks.catalogue import CATALOGUE
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.core import FAILED_EXIT, QA_DIR, QA_FILE, parse_qa_json
from dc2tasks.runs.config import RunConfig
from dc2tasks.runs.steps import QA_STEP, RunPlan, StepScript, qa_script

QA_GROUP = "qa"
APPROVE_TASK = "approve_qa"
MAX_REPORT_BYTES = 16 << 20


def qa_report_dir(plan: RunPlan, product: str) -> str:
    """Where `dc2 qa` writes a product's report: `<work>/<directory>/qa/<product>`."""
    return posixpath.join(plan.work_dir, CATALOGUE[product].directory, QA_DIR, product)


def describe_check(check: dict[str, Any]) -> str:
    detail = f": {check['detail']}" if check.get("detail") else ""
    return f"{check.get('name')} = {check.get('value')} (threshold {check.get('threshold')}){detail}"


class QaStepOperator(RunStepOperator):
    """`dc2 qa` of one product as a Slurm job, after finalize; skipped when the plan does not make
    the product. Pushes XCom `qa_report` = {product, verdict, report_dir, failures}."""

    def __init__(self, *, config: RunConfig, product: str, **kwargs: Any) -> None:
        super().__init__(config=config, step=QA_STEP, product=product, **kwargs)

    def script_for(self, plan: RunPlan) -> StepScript:
        return qa_script(CATALOGUE[self.product], self.config, plan, dc2_command(self.config))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        report = JobReport.from_event(event)
        failed = report.failed
        checks_failed = bool(failed) and all(
            report.elements[e].get("exit_code") == FAILED_EXIT for e in failed
        )
        if not checks_failed:
            job_id = super().execute_complete(context, event)  # raises on any other bad end
        else:
            job_id, self._job_id = report.job_id, None
        qa = self._publish(context)
        if checks_failed:
            lines = [describe_check(c) for c in qa["checks"] if c.get("verdict") == "fail"]
            raise AirflowFailException(
                f"QA of {self.product} failed (qa mode enforce): nothing is installed; failed checks:\n  "
                + "\n  ".join(lines)
            )
        return job_id

    def _publish(self, context: Context) -> dict[str, Any]:
        """Read the report the job wrote (where the job ran), log its verdict, push `qa_report`."""
        ti = context["ti"]
        plan = RunPlan.from_dict(ti.xcom_pull(task_ids=PLAN_TASK))
        report_dir = qa_report_dir(plan, self.product)
        path = posixpath.join(report_dir, QA_FILE)
        text, _ = SlurmHook(self.slurm_conn_id).client().read_log(path, 0, MAX_REPORT_BYTES)
        try:
            qa = parse_qa_json(text, path)
        except InputError as exc:
            raise AirflowFailException(f"QA of {self.product}: no readable report: {exc}") from None
        failures = [c for c in qa["checks"] if c.get("verdict") == "fail"]
        warnings = [c for c in qa["checks"] if c.get("verdict") == "warn"]
        self.log.info("qa %s: %s (%d checks); report %s", self.product, qa["verdict"], len(qa["checks"]),
                      report_dir)
        for check in warnings:
            self.log.warning("qa %s: warning: %s", self.product, describe_check(check))
        for check in failures:
            self.log.error("qa %s: FAILED (qa mode %s): %s", self.product, plan.qa, describe_check(check))
        ti.xcom_push(key=QA_REPORT_KEY, value={
            "product": self.product, "verdict": qa["verdict"], "report_dir": report_dir,
            "failures": [c.get("name") for c in failures]})
        return qa


def approval_body(reports: list[dict[str, Any]]) -> str:
    """What the person approving reads: each product's verdict, failed checks and report."""
    lines = ["| product | verdict | failed checks | report |", "| --- | --- | --- | --- |"]
    for r in reports:
        failed = ", ".join(r["failures"]) or "-"
        lines.append(f"| {r['product']} | **{r['verdict']}** | {failed} | `{r['report_dir']}/index.html` |")
    worst = [r["product"] for r in reports if r["verdict"] == "fail"]
    head = (f"QA failed for {', '.join(worst)}: approving installs them anyway (the failures are recorded "
            "in the provenance as overridden)." if worst else "Every QA check passed or only warned.")
    return head + "\n\n" + "\n".join(lines)


class QaApprovalOperator(ApprovalOperator):
    """The person's approval before install, in the `approve` mode of the gate (skipped otherwise
    and in a dry run). Approve: returns {"approved_by": user}; reject, or no answer within
    `qa.approve_timeout`: fails, nothing installed."""

    def __init__(self, *, config: RunConfig, qa_task_ids: list[str], **kwargs: Any) -> None:
        kwargs.setdefault("subject", f"Install the products of run {config.name}?")
        super().__init__(
            fail_on_reject=True, retries=0, response_timeout=config.qa.approve_wait,
            defaults=ApprovalOperator.REJECT, **kwargs,
        )  # fmt: skip
        self.config = config
        self.qa_task_ids = qa_task_ids

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        plan = RunPlan.from_dict(ti.xcom_pull(task_ids=PLAN_TASK))
        if plan.qa != "approve" or plan.dry_run:
            why = "a dry run" if plan.dry_run else f"qa mode {plan.qa}"
            raise AirflowSkipException(f"{why}: no approval asked")
        reports = [r for t in self.qa_task_ids if (r := ti.xcom_pull(task_ids=t, key=QA_REPORT_KEY))]
        self.body = (approval_body(reports) + f"\n\nUnanswered after {self.response_timeout} (the run file's "
                     f"`qa.approve_timeout` {self.config.qa.approve_timeout}), this is rejected.")
        self.log.info("waiting for approval (at most %s, qa.approve_timeout %s; then rejected):\n%s",
                      self.response_timeout, self.config.qa.approve_timeout, self.body)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("timedout") or event.get("error_type") == "timeout":
            raise AirflowFailException(
                f"no answer within {self.response_timeout} (run file qa.approve_timeout "
                f"{self.config.qa.approve_timeout}): rejected, nothing is installed. To be asked again, "
                f"clear {self.task_id} with its downstream tasks (the task's Clear in the UI, with "
                "Downstream), then approve in Required actions"
            )
        user = event.get("responded_by_user") or {}
        who = str(user.get("name") or user.get("id") or "unknown")
        try:
            super().execute_complete(context, event)
        except HITLRejectException:
            raise AirflowFailException(f"rejected by {who}: nothing is installed") from None
        self.log.info("approved by %s", who)
        return {"approved_by": who}

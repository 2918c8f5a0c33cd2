"""A job record reads the same whether it comes as sacct's text or as dc2tasks.slurm's JobInfo."""

from __future__ import annotations

from dc2tasks.install.provenance import job_record
from dc2tasks.slurm.commands import SACCT_FIELDS, parse_sacct


def test_sacct_text_and_jobinfo_give_one_record() -> None:
    fields = ("77", "dc2-demo-trim", "COMPLETED", "0:0", "1-00:02:03", "1.5G", "node1", "me", "")
    text = dict(zip(SACCT_FIELDS, fields, strict=True))
    (info,) = parse_sacct("|".join(fields))
    from_text, from_info = job_record(text), job_record(info)
    assert from_text["elapsed_s"] == from_info["elapsed_s"] == 86400 + 123
    assert from_text["max_rss_bytes"] == from_info["max_rss_bytes"] == int(1.5 * 1024**3)
    assert from_text["state"] == from_info["state"] == "COMPLETED"


def test_unreadable_sacct_fields_are_left_out() -> None:
    record = job_record({"JobID": "8", "State": "RUNNING", "Elapsed": "INVALID", "MaxRSS": "?"})
    assert record == {"job_id": "8", "state": "RUNNING", "elapsed_s": None, "max_rss_bytes": None}

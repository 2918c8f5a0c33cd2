"""Progress lines in a job's log: at a steady pace while the work runs, plain, with counts and rates."""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dc2tasks.products.progress import INTERVAL_ENV, Progress
from dc2tasks.products.repo import Gen2Repo

LOGGER = "dc2tasks.progress"


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[float, str]]:
    return [(r.created, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_lines_at_a_steady_pace_while_one_unit_is_slow(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress("tract 7 merge", 4, "patches", interval=0.1) as p:
        p.advance(1, rows=1000, MB=2.5)
        time.sleep(0.75)  # one slow patch: the lines go on
        p.advance(3, rows=3000, MB=7.5)
    lines = _lines(caplog)
    assert len(lines) >= 5
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(lines[:-1])]
    assert all(0.05 < g < 0.4 for g in gaps), gaps
    first = lines[0][1]
    assert re.fullmatch(
        r"tract 7 merge: 1/4 patches, [\d.]+ patches/s, 1000 rows \(\d+/s\), 2\.5 MB \([\d.]+/s\), "
        r"[\d.]+ s, about \d+ s left",
        first,
    ), first
    assert re.fullmatch(r"tract 7 merge: 4/4 patches, .*4000 rows.*, 10 MB .*, done in 0\.\d s", lines[-1][1])
    assert not any("\r" in m or "\n" in m for _, m in lines)


def test_an_error_is_said_and_propagates(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(ValueError), Progress("DIASource files", None, "files", interval=60) as p:
        p.advance(2)
        raise ValueError("bad file")
    assert _lines(caplog)[-1][1].startswith("DIASource files: 2 files, ")
    assert _lines(caplog)[-1][1].endswith("(stopped by an error)")


def test_merge_job_log_shows_progress_per_patch(small_sample, tmp_path):
    """`dc2 merge-tract` as a Slurm job runs it (no -v: the step logs warnings only) prints the
    progress lines on its log while it runs."""
    sample = small_sample()
    tract = sample.tracts[0]
    dc2 = shutil.which("dc2", path=str(Path(sys.executable).parent))
    assert dc2 is not None
    env = dict(os.environ, **{INTERVAL_ENV: "0.01"})
    out = str(tmp_path)
    argv = ["merge-tract", str(sample.root), "--rerun", sample.rerun, "--tract", str(tract), "-o", out]
    done = subprocess.run(
        [dc2, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if f"{LOGGER}: tract {tract} merge:" in line]
    patches = len(Gen2Repo.open(sample.root, sample.rerun).patches(tract))
    assert lines
    assert re.search(rf"merge: {patches}/{patches} patches, .* rows .*, done in [\d.]+ s$", lines[-1])
    assert "\r" not in done.stderr

"""A plain progress line in a job's log at a steady pace, for the steps that run for minutes.

A Slurm job's log is all an operator sees of it while it runs (the Airflow task streams it), and a
tract's merge that printed nothing until it ended looked hung. `Progress` prints one line every
`interval` seconds from a timer thread, so the pace holds even while one unit of work is slow: what
is done of how many, the rate, the other counts (rows, MB) with theirs, the time spent and left.
Plain lines, no carriage returns: a log file is not a terminal. They go to the `dc2tasks.progress`
logger, at INFO by default whatever the step's own log level, so a job's log always has them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType

log = logging.getLogger("dc2tasks.progress")
if log.level == logging.NOTSET:
    log.setLevel(logging.INFO)

INTERVAL_ENV = "DC2_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 5.0


def default_interval() -> float:
    """Seconds between lines: `DC2_PROGRESS_INTERVAL_S` (a test's short one), else 5."""
    value = os.environ.get(INTERVAL_ENV, "")
    try:
        return float(value) if value and float(value) > 0 else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


class Progress:
    """`with Progress("tract 4850 merge", 49, "patches") as p: ... p.advance(1, rows=n)`.

    Lines every `interval` seconds while the block runs, and one when it ends (with what was done);
    `advance` may be called from any thread.
    """

    def __init__(self, what: str, total: int | None, unit: str, interval: float | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.interval = default_interval() if interval is None else interval
        self.done = 0
        self.counts: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()

    def advance(self, n: int = 1, **counts: float) -> None:
        """`n` more units done, and more of the other counts (rows=..., MB=...)."""
        with self._lock:
            self.done += n
            for name, value in counts.items():
                self.counts[name] = self.counts.get(name, 0) + value

    def line(self, final: bool = False) -> str:
        with self._lock:
            done, counts = self.done, dict(self.counts)
        elapsed = max(time.monotonic() - self._start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.what}: {done}{of} {self.unit}", f"{done / elapsed:.2f} {self.unit}/s"]
        parts += [f"{_number(v)} {name} ({_number(v / elapsed)}/s)" for name, v in counts.items()]
        parts.append(f"{elapsed:.1f} s" if not final else f"done in {elapsed:.1f} s")
        if not final and self.total and done:
            parts.append(f"about {(self.total - done) * elapsed / done:.0f} s left")
        return ", ".join(parts)

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._tick, name=f"progress: {self.what}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if kind is None:
            log.info("%s", self.line(final=True))
        else:
            log.info("%s (stopped by an error)", self.line())

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            log.info("%s", self.line())


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.1f}"

"""Run one product's checks (the catalogue's `Product.qa`) and write its report directory:
`qa.json`, `index.html` and `plots/*.png` (what `dc2 qa` and the DAG's qa step do)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from dc2tasks.catalogue import CATALOGUE, Product
from dc2tasks.products.errors import InputError
from dc2tasks.products.qa.core import (
    PLOTS_DIR,
    QA_DIR,
    QA_FILE,
    REPORT_FILE,
    QaFunction,
    QaInputs,
    QaReport,
    Thresholds,
    write_qa_json,
)
from dc2tasks.products.qa.report import write_report


def qa_function(product: Product) -> QaFunction:
    """The function the catalogue names for a product's checks."""
    if not product.qa:
        raise InputError(f"{product.name}: the catalogue names no QA function")
    module, _, name = product.qa.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"{product.name}: QA function {product.qa} not found ({exc})") from None


def default_out(directory: Path, product: str) -> Path:
    """A product's report directory inside its product directory (installed with it)."""
    return directory / QA_DIR / product


def read_json_argument(text: str, what: str) -> Any:
    """JSON given inline (starting with `{`) or as a file's path."""
    try:
        return json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())
    except OSError as exc:
        raise InputError(f"{what} {text}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{what}: not JSON ({exc})") from None


def make_inputs(
    directory: Path,
    product: str,
    *,
    out: Path | None = None,
    thresholds: Mapping[str, object] | None = None,
    inventory: Mapping[str, Any] | None = None,
    truth: Path | None = None,
    tracts: Sequence[int] = (),
    visits: Sequence[int] = (),
) -> QaInputs:
    if product not in CATALOGUE.names:
        raise InputError(f"unknown product {product!r}; known: {', '.join(CATALOGUE.names)}")
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    for what, value in (("--thresholds", thresholds), ("--against", inventory)):
        if value is not None and not isinstance(value, Mapping):
            raise InputError(f"{what}: a JSON object, not {type(value).__name__}")
    if truth is not None and not truth.is_dir():
        raise InputError(f"{truth}: no truth directory")
    return QaInputs(
        CATALOGUE[product],
        directory,
        out or default_out(directory, product),
        Thresholds.from_mapping(thresholds),
        inventory,
        truth,
        tuple(tracts),
        tuple(visits),
    )


@contextmanager
def system_memory_pool() -> Iterator[None]:
    """Arrow's buffers from the C library's allocator while the checks read: Arrow's default
    (mimalloc) keeps each freed column's pages, on huge pages where the kernel allows them, and a
    read of a few columns per row group then costs twice the memory and more time (benchmarks/qa.py)."""
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def run_qa(inputs: QaInputs) -> QaReport:
    """The product's checks; its report directory written (qa.json last: it says the report is
    whole). Plots an earlier run drew and this one did not are removed: the directory is this report."""
    plots = inputs.out / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    with system_memory_pool():
        report = qa_function(inputs.product)(inputs)
    drawn = {Path(p.file).name for p in report.plots}
    for old in plots.glob("*.png"):
        if old.name not in drawn:
            old.unlink()
    write_report(report, inputs.out)
    write_qa_json(report, inputs.out)
    return report


def report_files(report: QaReport) -> list[str]:
    """The report directory's files, relative to it (what goes into the product's manifest)."""
    return [QA_FILE, REPORT_FILE, *(p.file for p in report.plots)]

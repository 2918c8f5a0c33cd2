"""Which detectors a visit has, and which files each of them needs.

The old scripts took whatever `butler.subset` returned and silently skipped the rest, so a visit with
a detector still being processed went out short. Here a detector is either complete (its catalog and
its calibration exposure, plus the calexp for the date) or the visit is refused with the list of what
is missing, unless the caller asks to go on without those detectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dc2tasks.products.errors import InputError
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.products.visit_info import detector_number
from dc2tasks.products.visit_tables import VisitTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorFiles:
    number: int
    data_id: dict[str, object]
    catalogs: tuple[Path, ...]  # obs_lsstSim forced_src: one per tract the detector overlaps
    exposure: Path  # whose calibration applies
    calexp: Path  # whose visit info gives the date

    @property
    def band(self) -> str:
        return str(self.data_id["filter"])


Found = list[tuple[dict[str, object], Path]]


def _by_detector(found: Found) -> dict[int, Found]:
    out: dict[int, Found] = {}
    for data_id, path in found:
        out.setdefault(detector_number(data_id), []).append((data_id, path))
    return out


def _where(repo: Gen2Repo) -> str:
    return ", ".join(str(p) for p in repo.chain)


def _numbers(numbers: set[int]) -> str:
    return ", ".join(str(n) for n in sorted(numbers))


def visit_detectors(
    repo: Gen2Repo, table: VisitTable, visit: int, allow_missing: bool = False
) -> list[DetectorFiles]:
    catalogs = _by_detector(repo.discover(table.dataset, visit=visit))
    if not catalogs:
        raise InputError(
            f"visit {visit}: no {table.dataset} catalog in {_where(repo)}; is the visit number right?"
        )
    exposures = _by_detector(repo.discover(table.calib_dataset, visit=visit))
    calexps = exposures
    if table.calib_dataset != "calexp":
        calexps = _by_detector(repo.discover("calexp", visit=visit))

    no_exposure = set(catalogs) - set(exposures)
    if no_exposure:
        raise InputError(
            f"visit {visit}: detector(s) {_numbers(no_exposure)} have a {table.dataset} but no "
            f"{table.calib_dataset}, so no calibration for them"
        )
    no_calexp = set(catalogs) - set(calexps)
    if no_calexp:
        raise InputError(f"visit {visit}: detector(s) {_numbers(no_calexp)} have no calexp (visit date)")
    missing = set(exposures) - set(catalogs)
    if missing:
        message = (
            f"visit {visit}: detector(s) {_numbers(missing)} have a {table.calib_dataset} but no "
            f"{table.dataset}: the visit is incomplete"
        )
        if not allow_missing:
            raise InputError(message + " (allow missing detectors to go on without them)")
        log.warning("%s; going on without them", message)

    bands = {str(d["filter"]) for found in catalogs.values() for d, _ in found}
    if len(bands) != 1:
        raise InputError(f"visit {visit}: detectors disagree on the filter: {sorted(bands)}")
    detectors = []
    for number in sorted(catalogs):
        found = catalogs[number]
        detectors.append(
            DetectorFiles(
                number,
                found[0][0],
                tuple(p for _, p in found),
                exposures[number][0][1],
                calexps[number][0][1],
            )
        )
    return detectors

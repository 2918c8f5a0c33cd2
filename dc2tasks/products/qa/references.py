"""What a product is compared with: the repository's inputs and the truth tables.

The inventory's repository (`inventory_repo`) and a catalog's rows from its header (`header_rows`)
serve every product; for the Object products:

- The inputs (`dc2 qa --against INVENTORY`): the inventory report names the repository, its rerun
  chain and camera; each patch's `deepCoadd_ref` is found along that chain as the inventory found
  it, and only its header is read (NAXIS2, every row the pipelines detected). The merge keeps the
  primary ones, so a patch's Object rows are at most that many, and a patch with rows in its ref
  must be in the product.
- The truth tables (`--truth DIR`, the sample generator's): one row per object and patch it was
  written to, one row group per patch; a patch's primary rows are exactly the Object rows of that
  patch, matched by objectId.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from dc2tasks.products import afw
from dc2tasks.products.errors import InputError
from dc2tasks.products.inventory import Scope, scan_chain
from dc2tasks.products.progress import Progress
from dc2tasks.products.qa.columns import values_of
from dc2tasks.products.repo import Gen2Repo

REF_DATASET = "deepCoadd_ref"
"""The catalog whose rows (the primary ones) become the Object rows of a patch."""

TRUTH_DIR = "truth"
TRUTH_FILE = "object_truth_tract_{tract}.parquet"
"""The sample's truth table of a tract, in `<sample>/truth/` (dc2tasks.sample.truth writes it)."""

VISIT_TRUTH_FILES = {
    "source": "source_truth_visit_{visit}.parquet",
    "forced_source": "forced_truth_visit_{visit}.parquet",
    "dia_source": "dia_source_truth_visit_{visit}.parquet",
}
"""A visit's truth table of each visit product, in `<sample>/truth/` (dc2tasks.sample.visit_truth
writes them)."""

TRUTH_PRIMARY = "is_primary"
TRUTH_FLUX = "psf_flux_nJy_{b}"


def inventory_repo(inventory: Mapping[str, Any]) -> Gen2Repo:
    """The repository an inventory report names, with the rerun chain and camera it found."""
    try:
        return Gen2Repo(
            Path(inventory["repository"]), [Path(p) for p in inventory["chain"]], inventory["camera"]
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"the inventory report lacks the repository, chain or camera ({exc})") from None


def header_rows(path: Path) -> int:
    """A FITS catalog's rows from its header (NAXIS2) only: the rows the pipelines wrote."""
    return int(afw.read_header(path).get("NAXIS2", 0) or 0)


def input_rows(inventory: Mapping[str, Any], tracts: Iterable[int] = ()) -> dict[tuple[int, str], int]:
    """Rows (NAXIS2) of each patch's deepCoadd_ref in the repository the inventory report names."""
    repo = inventory_repo(inventory)
    scope = Scope(tracts=tuple(tracts) or tuple(inventory.get("scope", {}).get("tracts", ())))
    with Progress("qa inputs", None, "directories") as progress:
        found = scan_chain(repo, REF_DATASET, scope.keep(False), progress)
    return {(int(k[0]), str(k[1])): header_rows(f.path) for k, f in found.items() if not f.problem}


def truth_dir(root: Path) -> Path:
    """The truth tables' directory: `root` is a sample (holding truth/) or truth/ itself."""
    return root / TRUTH_DIR if (root / TRUTH_DIR).is_dir() else root


@dataclass
class Truth:
    """The truth tables of a sample: `root` is the sample (holding truth/) or truth/ itself."""

    root: Path
    _index: dict[int, tuple[pq.ParquetFile, dict[str, list[int]], dict[str, int]]] = field(
        default_factory=dict
    )

    def path(self, tract: int) -> Path:
        return truth_dir(self.root) / TRUTH_FILE.format(tract=tract)

    def _tract(self, tract: int) -> tuple[pq.ParquetFile, dict[str, list[int]], dict[str, int]] | None:
        """The tract's file, its row groups by patch and its primary rows by patch (read once, from
        two columns)."""
        if tract not in self._index:
            path = self.path(tract)
            if not path.is_file():
                return None
            pf = pq.ParquetFile(path)
            groups: dict[str, list[int]] = {}
            primary: dict[str, int] = {}
            for i in range(pf.num_row_groups):
                table = pf.read_row_group(i, columns=["patch", TRUTH_PRIMARY])
                patches = values_of(table["patch"])
                keep = values_of(table[TRUTH_PRIMARY])
                for p in np.unique(patches).tolist():
                    groups.setdefault(p, []).append(i)
                    primary[p] = primary.get(p, 0) + int(keep[patches == p].sum())
            self._index[tract] = (pf, groups, primary)
        return self._index[tract]

    def primary_rows(self, tracts: Iterable[int]) -> dict[tuple[int, str], int]:
        """Primary rows per (tract, patch): what the Object product holds for each."""
        out = {}
        for t in tracts:
            found = self._tract(t)
            if found is None:
                raise InputError(f"{self.path(t)}: no truth table for tract {t}")
            out.update({(t, p): n for p, n in found[2].items()})
        return out

    def rows(self, tract: int, patches: Iterable[str], columns: list[str]) -> dict[str, np.ndarray] | None:
        """The primary truth rows of these patches of a tract, sorted by objectId."""
        found = self._tract(tract)
        if found is None:
            return None
        pf, groups, _ = found
        index = sorted({i for p in patches for i in groups.get(p, [])})
        if not index:
            return {c: np.zeros(0) for c in ["objectId", *columns]}
        table = pf.read_row_groups(index, columns=["objectId", "patch", TRUTH_PRIMARY, *columns])
        keep = values_of(table[TRUTH_PRIMARY]) & np.isin(values_of(table["patch"]), list(patches))
        values = {c: values_of(table[c])[keep] for c in ["objectId", *columns]}
        order = np.argsort(values["objectId"], kind="stable")
        return {c: v[order] for c, v in values.items()}

"""Field-name generations of DM catalogs, as GCRCatalogs numbers them (dm_schema_version 1-4).

afw renamed `_flux`/`_fluxSigma` to `_flux`/`_fluxErr` (v2) and then `_instFlux`/`_instFluxErr` (v3);
GCRCatalogs calls a v3 file without `base_Blendedness_abs_instFlux` "v4". The detection rule here is
the reader's own, so what we write is read back the way we meant it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SchemaGeneration:
    version: int

    def __post_init__(self) -> None:
        if self.version not in (1, 2, 3, 4):
            raise ValueError(f"dm_schema_version must be 1, 2, 3 or 4, not {self.version!r}")

    @property
    def flux(self) -> str:
        return "flux" if self.version <= 2 else "instFlux"

    @property
    def err(self) -> str:
        return "Sigma" if self.version <= 1 else "Err"

    @property
    def flux_err(self) -> str:
        """Suffix of a flux error field: `fluxSigma`, `fluxErr` or `instFluxErr`."""
        return f"{self.flux}{self.err}"

    @property
    def blendedness(self) -> str:
        return "base_Blendedness_abs" + (f"_{self.flux}" if self.version <= 3 else "")

    @property
    def centroid_err(self) -> str:
        """Suffix of a centroid error field: `Sigma` (v1) or `Err`."""
        return self.err

    @property
    def name(self) -> str:
        return f"v{self.version}"


def detect_schema_generation(columns: Iterable[str]) -> SchemaGeneration:
    cols = list(columns)
    if any(c.endswith("_fluxSigma") for c in cols):
        return SchemaGeneration(1)
    if any(c.endswith("_fluxErr") for c in cols):
        return SchemaGeneration(2)
    if "base_Blendedness_abs_instFlux" in cols:
        return SchemaGeneration(3)
    return SchemaGeneration(4)


def parse_generation(text: str | int) -> SchemaGeneration:
    s = str(text).lower().lstrip("v")
    try:
        return SchemaGeneration(int(s))
    except ValueError:
        raise ValueError(f"schema generation must be one of v1, v2, v3, v4, not {text!r}") from None

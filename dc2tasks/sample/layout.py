"""The Gen2 repository skeleton: root `_mapper`, the coadd rerun and its child rerun.

repositoryCfg.yaml is written as the Gen2 butler serialized RepositoryCfg (a `!RepositoryCfg_v1`
mapping naming the mapper class with a `!!python/name:` tag and the parents as relative paths), so
a reader that handles real reruns handles these.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from dc2tasks.products.atomic import atomic_path
from dc2tasks.sample.config import VISIT_OPTIONS, SampleConfig
from dc2tasks.sample.paths import MAPPERS

COADD_RERUN = "coadd"
MARKER = "sample_config.json"


def repository_cfg(mapper: str, parents: list[str]) -> str:
    lines = [
        "!RepositoryCfg_v1",
        f"_mapper: !!python/name:{mapper} ''",
        "_mapperArgs: {}",
        "_parents:",
        *(f"- {p}" for p in parents),
        "_policy: null",
        "_root: null",
        "dirty: true",
    ]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_skeleton(root: Path, config: SampleConfig) -> None:
    mapper = MAPPERS[config.camera]
    root.mkdir(parents=True, exist_ok=True)
    _write_text(root / "_mapper", mapper + "\n")
    _write_text(root / "rerun" / COADD_RERUN / "repositoryCfg.yaml", repository_cfg(mapper, ["../.."]))
    _write_text(
        root / "rerun" / config.rerun / "repositoryCfg.yaml", repository_cfg(mapper, [f"../{COADD_RERUN}"])
    )
    # what made this tree, so a test or a person can regenerate it
    _write_text(root / MARKER, json.dumps(marker_options(config), indent=1, sort_keys=True) + "\n")


def marker_options(config: SampleConfig) -> dict[str, object]:
    """The config as written to the marker file; without visits, the visit options are left out so
    that such a repository is byte for byte what it was before visits existed."""
    options = asdict(config)
    if not config.visits:
        for name in VISIT_OPTIONS:
            options.pop(name)
    return options

"""The central install: producer manifest, staged and verified copy, atomic switch, provenance.

No Airflow import: `dc2 install` runs this on the machine that holds the central directory.
"""

from dc2tasks.install.check import gcr_check
from dc2tasks.install.errors import InstallError
from dc2tasks.install.install import copy_and_hash, install_product
from dc2tasks.install.layout import ProductLayout
from dc2tasks.install.manifest import FileEntry, Manifest, read_manifest, write_manifest
from dc2tasks.install.producer import add_catalog_configs, prepare_product
from dc2tasks.install.provenance import build_provenance, job_record
from dc2tasks.install.types import InstallResult

__all__ = [
    "FileEntry",
    "InstallError",
    "InstallResult",
    "Manifest",
    "ProductLayout",
    "add_catalog_configs",
    "build_provenance",
    "copy_and_hash",
    "gcr_check",
    "install_product",
    "job_record",
    "prepare_product",
    "read_manifest",
    "write_manifest",
]

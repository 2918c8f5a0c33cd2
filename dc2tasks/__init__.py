"""DESC DC2 catalog production: the science (products), Slurm, and Airflow glue."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dc2tasks")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

"""Data runs: the typed run file model, its loader, trigger params and rerun discovery.

No Airflow import: the DAG factory calls these, and so do `dc2 run-config` and `dc2 reruns`.
"""

from dc2tasks.runs.config import PRODUCTS, STEPS, RunConfig, read_visit_file
from dc2tasks.runs.loader import RunConfigError, config_hash, load_run_config, load_run_dir, parse_run_config
from dc2tasks.runs.params import (
    ParamsError,
    TriggerParams,
    params_json_schema,
    params_schema,
    validate_params,
)
from dc2tasks.runs.reruns import JsonRerunStore, MemoryRerunStore, RerunListing, list_reruns, new_reruns

__all__ = [
    "PRODUCTS",
    "STEPS",
    "JsonRerunStore",
    "MemoryRerunStore",
    "ParamsError",
    "RerunListing",
    "RunConfig",
    "RunConfigError",
    "TriggerParams",
    "config_hash",
    "list_reruns",
    "load_run_config",
    "load_run_dir",
    "new_reruns",
    "params_json_schema",
    "params_schema",
    "parse_run_config",
    "read_visit_file",
    "validate_params",
]

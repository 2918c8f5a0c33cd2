"""Data runs: the typed run file model, its loader, trigger params and rerun discovery.

No Airflow import: the DAG factory calls these, and so do `dc2 run-config` and `dc2 reruns`.
"""

from dc2tasks.runs.config import PRODUCTS, STEPS, RerunRule, RunConfig, read_visit_file
from dc2tasks.runs.loader import RunConfigError, config_hash, load_run_config, load_run_dir, parse_run_config
from dc2tasks.runs.params import (
    ParamsError,
    TriggerParams,
    params_json_schema,
    params_schema,
    validate_params,
)
from dc2tasks.runs.rerun_facts import FactsRequest, Listing, gather
from dc2tasks.runs.reruns import JsonRerunStore, MemoryRerunStore, WatchReport, list_facts, watch_reruns

__all__ = [
    "PRODUCTS",
    "STEPS",
    "FactsRequest",
    "JsonRerunStore",
    "Listing",
    "MemoryRerunStore",
    "ParamsError",
    "RerunRule",
    "RunConfig",
    "RunConfigError",
    "TriggerParams",
    "WatchReport",
    "config_hash",
    "gather",
    "list_facts",
    "load_run_config",
    "load_run_dir",
    "params_json_schema",
    "params_schema",
    "parse_run_config",
    "read_visit_file",
    "validate_params",
    "watch_reruns",
]

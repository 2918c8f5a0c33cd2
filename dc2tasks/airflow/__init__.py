"""Airflow side of dc2-production: the Slurm operator, its trigger and the shared poller.

Everything here is thin: job rendering, states and transports live in `dc2tasks.slurm` (no Airflow
there). Triggers must be importable from an installed package (the triggerer never reads the dags
folder), which is why they live in `dc2tasks.airflow.triggers`.
"""

"""The local service: this repository's DAGs run by Airflow on one machine, for a person.

`dc2 demo` (demo.py) runs the demo data run once with `airflow dags test` and checks what it
installed; `dc2 serve` (serve.py) keeps `airflow standalone` up (standalone.py) in a private network
namespace (netns.py). Both use the same work directory (demo_sample.py), Airflow environment
(airflow_env.py) and private AIRFLOW_HOME (private.py). Nothing here imports Airflow or the `dc2`
command line: the command line imports this.
"""

"""The science: reading Gen2 repositories and writing DC2 catalogs. Never imports Airflow."""

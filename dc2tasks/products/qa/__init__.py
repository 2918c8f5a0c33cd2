"""Quality checks of a made product before it is installed: checks, plots, the report."""

"""Prefect flows and the `wiro-sweep` command line, built on `wiro_tasks`."""

"""Prefect flows and the `wiro-sweep` command line, built on `wiro_tasks`."""

from flows.memory import arrow_gives_back

arrow_gives_back()  # before pyarrow is first imported (flows/memory.py)

"""Prefect flows and the `wiro-sweep` command line, built on `wiro_tasks`."""

from flows.memory import arrow_gives_back
from flows.priority import yield_cpu_at_start

arrow_gives_back()  # before pyarrow is first imported (flows/memory.py)
yield_cpu_at_start()  # a worker's flow run gives the server the CPU before its set-up (flows/priority.py)

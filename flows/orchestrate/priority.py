"""A worker's run says it gives the CPU to the Prefect server first (flows/priority.py says why).

Importing `flows` already lowered the priority of a process started for a flow run; the flow
does it again when it begins (a thread started since gives way too), for deployments' runs
only, and names the level, or a bad `WIRO_SWEEP_NICE`, in the run's log.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefect.context import FlowRunContext

from flows.priority import ENV_NICE, wanted_nice, yield_cpu


def yield_cpu_on_a_worker(logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """In a deployment's flow run (a worker started it), lower its CPU priority, and say so."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return
    nice, warning = wanted_nice()
    if warning:
        logger.warning(warning)
    if yield_cpu(nice):
        at = os.getpriority(os.PRIO_PROCESS, 0)  # `nice`, or lower where it started lower
        logger.info("CPU priority at nice %d: the Prefect server and its UI go first (%s)", at, ENV_NICE)

"""A task as the emulator describes it to Task/Detail, Task/List and the socket: every field, odd ones on request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import Account, EmulatedTask


FAILURE_REASONS = (
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "ValueError: NaN detected in latents at step 17",
    "Worker lost: the GPU node stopped responding",
)
MODEL_DESCRIPTIONS = {  # a task record's `modeldescription`; the emulator's own words, not Wiro's
    "Wan-AI/Wan2.2-TI2V-5B-text-to-video": "Wan2.2 TI2V-5B text to video (emulated).",
    "Wan-AI/Wan2.2-TI2V-5B-image-to-video": "Wan2.2 TI2V-5B image to video (emulated).",
}


def describe(account: Account, task: EmulatedTask, now: float, file_url: str) -> dict[str, Any]:
    """The task as Task/Detail answers it: every value a string."""
    status = task.status_at(now)
    done = status == "task_postprocess_end"
    failed = done and task.fail
    stopped = status == "task_cancel"
    horizon = min(now, task.stopped_at) if task.stopped_at is not None else now

    def reached(share: float) -> float | None:
        """When the task reached a phase (a share of its run after accept), if it did."""
        at = task.accept_at + task.run * share
        return at if at <= horizon else None

    accept = reached(0.0)
    start = reached(0.10)
    end = task.end_at if done else (task.stopped_at if stopped else None)
    outputs = []
    if done and not failed and task.output is not None:
        name, size = task.output
        outputs.append(
            {
                "id": str(task.id * 10),
                "name": name,
                "contenttype": "video/mp4",
                "parentid": str(task.id),
                "uuid": task.uuid,
                "size": str(size),
                "addedtime": str(account.wall(task.end_at)),
                "modifiedtime": str(account.wall(task.end_at)),
                "accesskey": task.token[:12],
                "url": f"{file_url}/{task.uuid}/{name}",
            }
        )
    debugerror = ""
    if failed:
        debugerror = task.failure or FAILURE_REASONS[task.id % len(FAILURE_REASONS)]
    elif status == "task_error":
        debugerror = "ConnectionError: could not fetch model weights; waiting for recovery"

    def stamp(at: float | None) -> str:
        return str(account.wall(at)) if at is not None else "0"

    owner, _, project = task.model.partition("/")
    described = {
        "id": str(task.id),
        "uuid": task.uuid,
        "name": "",
        "modelslugowner": owner,
        "modelslugproject": project,
        "modeldescription": MODEL_DESCRIPTIONS.get(task.model, ""),
        "socketaccesstoken": task.token,
        "parameters": {k: str(v) for k, v in task.parameters.items()},
        "debugoutput": "" if not done else "Generated video in model time",
        "debugerror": debugerror,
        "starttime": stamp(start),
        "endtime": stamp(end),
        "elapsedseconds": str(account.elapsed(task, now)),
        "status": status,
        "cps": str(account.price_of(task)[1]),
        "totalcost": str(account.cost(task, now)) if account.cost(task, now) else "0",
        "createtime": stamp(task.created),
        "assigntime": stamp(reached(0.06)),
        "accepttime": stamp(accept),
        "preprocessstarttime": stamp(accept),
        "preprocessendtime": stamp(reached(0.04)),
        "postprocessstarttime": stamp(end if done else None),
        "postprocessendtime": stamp(end if done else None),
        "pexit": ("1" if failed else "0") if done else ("-1" if stopped else ""),
        "canceltime": stamp(task.stopped_at) if stopped else "0",
        "callbackurl": task.callback_url,
        "outputs": outputs,
        "size": str(outputs[0]["size"]) if outputs else "0",
    }
    for name, value in task.odd_fields.items():
        if value is None:
            described.pop(name, None)
        else:
            described[name] = value
    return described

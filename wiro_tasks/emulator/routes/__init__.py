"""The emulator's routes, one module per concern; `ROUTES` is the table `create_app` serves.

- `guard`: counting, injected faults, authentication and body limits before every API route;
- `run`: Run; `tasks`: Task/Detail, List, Cancel and Kill; `tools`: Tool/Detail;
- `files`: File/Upload, the uploads and the outputs served back; `socket`: the task websocket;
- `operator`: `/_emulator/stats`, `/tasks` and `/faults`, and the answer to any other path.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..uploads import UPLOAD_PATH
from . import files, operator, run, socket, tasks, tools

ROUTES: list[BaseRoute] = [
    Route("/v1/Run/{owner}/{model}", run.run, methods=["POST"]),
    Route("/v1/Task/Detail", tasks.detail, methods=["POST"]),
    Route("/v1/Task/List", tasks.task_list, methods=["POST"]),
    Route("/v1/Task/Cancel", tasks.cancel, methods=["POST"]),
    Route("/v1/Task/Kill", tasks.kill, methods=["POST"]),
    Route("/v1/Tool/Detail", tools.tool_detail, methods=["POST"]),
    Route("/v1/File/Upload", files.file_upload, methods=["POST"]),
    Route("/files/{uuid}/{name}", files.output, methods=["GET", "HEAD"]),
    Route(UPLOAD_PATH + "/{file_id}/{name}", files.uploaded, methods=["GET", "HEAD"]),
    WebSocketRoute("/socket/v1", socket.socket),
    Route("/_emulator/stats", operator.stats),
    Route("/_emulator/tasks", operator.tasks),
    Route("/_emulator/faults", operator.faults, methods=["GET", "POST"]),
    Route("/{path:path}", operator.unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]

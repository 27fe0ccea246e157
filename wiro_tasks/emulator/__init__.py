"""A local stand-in for api.wiro.ai that speaks the same wire format, for demos, tests and benchmarks.

It runs the two Wan 2.2 TI2V-5B models with configurable timings, outcomes and faults, bills
`elapsedseconds * cps`, enforces a concurrency limit and a balance, and serves real MP4 files.
The server side (`create_app`, `EmulatorServer`, `serve`: Starlette, uvicorn) is imported when
first used, so reading the settings (`config`, `options`) stays light, as `wiro-sweep` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import DEMO_API_KEY, EmulatorConfig, Faults
from .state import Account

if TYPE_CHECKING:
    from .app import create_app
    from .server import EmulatorServer, serve

__all__ = ["DEMO_API_KEY", "Account", "EmulatorConfig", "EmulatorServer", "Faults", "create_app", "serve"]
_LAZY = {"create_app": ".app", "EmulatorServer": ".server", "serve": ".server"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value

"""A local stand-in for api.wiro.ai that speaks the same wire format, for demos, tests and benchmarks.

It runs the two Wan 2.2 TI2V-5B models with configurable timings, outcomes and faults, bills
`elapsedseconds * cps`, enforces a concurrency limit and a balance, and serves real MP4 files.
"""

from .app import create_app
from .config import DEMO_API_KEY, EmulatorConfig, Faults
from .server import EmulatorServer, serve
from .state import Account

__all__ = ["DEMO_API_KEY", "Account", "EmulatorConfig", "EmulatorServer", "Faults", "create_app", "serve"]

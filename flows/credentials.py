"""Where a flow run finds its Wiro credentials: the environment, else Prefect Secret blocks.

Secret blocks `wiro-api-key` and `wiro-api-secret` (the second only for signature mode) are read
inside the run, so no credential is ever a deployment parameter, a templated job variable, a
result or a log line. The values go straight to the client and nowhere else.
"""

from __future__ import annotations

import os

from wiro_tasks import Credentials
from wiro_tasks._config import ENV_API_KEY, ENV_API_SECRET
from wiro_tasks.prefect_tasks import use_credentials

KEY_BLOCK = "wiro-api-key"
SECRET_BLOCK = "wiro-api-secret"


class MissingCredentialsError(RuntimeError):
    exit_code = 2


def load_credentials() -> Credentials:
    """Credentials for this run's client, from `WIRO_API_KEY`/`WIRO_API_SECRET` or Secret blocks."""
    credentials = Credentials.resolve() if os.environ.get(ENV_API_KEY) else _from_blocks()
    use_credentials(credentials)
    return credentials


def _secret(name: str) -> str:
    from prefect.blocks.system import Secret

    block = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    return str(block.get())  # type: ignore[union-attr]


def _from_blocks() -> Credentials:
    try:
        key = _secret(KEY_BLOCK)
    except Exception as exc:  # missing block, or no Prefect API to ask
        raise MissingCredentialsError(
            f"No Wiro credentials: set {ENV_API_KEY} (and {ENV_API_SECRET}) in the environment, "
            f"or create the Prefect Secret block {KEY_BLOCK!r} (and {SECRET_BLOCK!r})"
        ) from exc
    try:
        secret = _secret(SECRET_BLOCK)
    except Exception:
        secret = None
    return Credentials(api_key=key, api_secret=secret or None)

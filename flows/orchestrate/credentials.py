"""Where a flow run finds its Wiro credentials: the environment, else Prefect Secret blocks.

Secret blocks `wiro-api-key` and `wiro-api-secret` (the second only for signature mode) are read
inside the run, so no credential is ever a deployment parameter, a templated job variable, a
result or a log line. The values go straight to the client and nowhere else.

`load_credentials` also checks the rest of the client's settings (`WIRO_BASE_URL`,
`WIRO_SOCKET_URL`): the flow calls it before any row runs, so a bad setting ends the run with
exit code 2 before a journal line, an OUT directory or a Run request, not inside every submit.
"""

from __future__ import annotations

import os

from flows.errors import InputError
from wiro_tasks import ClientConfig, ConfigurationError, Credentials
from wiro_tasks._config import ENV_API_KEY, ENV_API_SECRET, check_credential

KEY_BLOCK = "wiro-api-key"
SECRET_BLOCK = "wiro-api-secret"


class ConfigError(InputError, RuntimeError):
    """The Wiro settings are missing or malformed; the command exits with 2."""


class MissingCredentialsError(ConfigError):
    """Neither `WIRO_API_KEY` nor the Secret block `wiro-api-key` holds a key."""


def load_credentials() -> Credentials:
    """Credentials for this run's client, from `WIRO_API_KEY`/`WIRO_API_SECRET` or Secret blocks,
    with the base and socket URLs checked too; `ConfigError` (exit code 2) names a bad setting."""
    try:
        credentials = Credentials.resolve() if os.environ.get(ENV_API_KEY) else _from_blocks()
        ClientConfig.resolve(credentials.api_key, credentials.api_secret or "")  # the URLs too
    except ConfigurationError as exc:
        raise ConfigError(str(exc)) from None
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
    if not key:
        raise MissingCredentialsError(f"The Prefect Secret block {KEY_BLOCK!r} is empty")
    check_credential(key, f"The Prefect Secret block {KEY_BLOCK!r}", KEY_BLOCK)
    check_credential(secret or "", f"The Prefect Secret block {SECRET_BLOCK!r}", SECRET_BLOCK)
    return Credentials(api_key=key, api_secret=secret or None)

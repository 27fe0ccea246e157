"""Named defaults and the environment variables the client and the emulator read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_BASE_URL = "https://api.wiro.ai/v1"
DEFAULT_SOCKET_URL = "wss://socket.wiro.ai/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0

ENV_API_KEY = "WIRO_API_KEY"
ENV_API_SECRET = "WIRO_API_SECRET"
ENV_BASE_URL = "WIRO_BASE_URL"
ENV_SOCKET_URL = "WIRO_SOCKET_URL"


@dataclass(frozen=True)
class Credentials:
    """An API key and, in signature mode, its secret. The secret never shows in a repr."""

    api_key: str
    api_secret: str | None = field(default=None, repr=False)

    @property
    def signed(self) -> bool:
        return bool(self.api_secret)

    def __repr__(self) -> str:
        mode = "signature" if self.signed else "key-only"
        return f"Credentials(api_key={_mask(self.api_key)!r}, mode={mode!r})"

    @classmethod
    def resolve(cls, api_key: str | None = None, api_secret: str | None = None) -> Credentials:
        """Arguments win; otherwise `WIRO_API_KEY` and `WIRO_API_SECRET` from the environment."""
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY, "")
        if api_secret is None:
            api_secret = os.environ.get(ENV_API_SECRET) if api_key is None else None
        if not key:
            raise ValueError(
                f"No Wiro API key: pass api_key= or set {ENV_API_KEY} (and {ENV_API_SECRET} for signature mode)."
            )
        for name, value in (("API key", key), ("API secret", api_secret or "")):
            if value != value.strip() or any(ord(c) < 32 or ord(c) > 126 for c in value):
                raise ValueError(f"The Wiro {name} holds whitespace or non-ASCII characters: check how it was set.")
        return cls(api_key=key, api_secret=api_secret or None)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Credentials are not picklable: they must never be persisted")


def resolve_base_url(base_url: str | None = None) -> str:
    """Argument, else `WIRO_BASE_URL`, else the public API; always without a trailing slash."""
    url = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).strip()
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"The Wiro base URL must start with http:// or https:// (got {url!r}).")
    return url.rstrip("/")


def _mask(value: str) -> str:
    return value[:4] + "..." if len(value) > 8 else "***"


def resolve_socket_url(socket_url: str | None, base_url: str) -> str | None:
    """Argument, else `WIRO_SOCKET_URL`, else Wiro's socket for Wiro's API; no socket for other servers
    unless one is named (an empty value turns it off)."""
    url = socket_url if socket_url is not None else os.environ.get(ENV_SOCKET_URL)
    if url is None:
        return DEFAULT_SOCKET_URL if base_url == DEFAULT_BASE_URL else None
    url = url.strip()
    if url and not url.startswith(("ws://", "wss://")):
        raise ValueError(f"The Wiro socket URL must start with ws:// or wss:// (got {url!r}).")
    return url or None

"""Named defaults and the environment variables the client and the emulator read."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ._exceptions import ConfigurationError

DEFAULT_BASE_URL = "https://api.wiro.ai/v1"
DEFAULT_SOCKET_URL = "wss://socket.wiro.ai/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0
# A 5 s 832x480 H.264 clip is a few MB (the emulator's, 121 frames, is 0.75 MB): 64 MiB leaves
# room for any encoder, and bounds what a server that announces no size can make us write.
DEFAULT_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
DEFAULT_DOWNLOAD_TIMEOUT = 120.0  # seconds for one whole download: a few MB at a few hundred kbit/s

# scheme://userinfo@ in free text; userinfo runs to the authority's last "@" (a password may hold one)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@]*(?:@[^\s/?#@]*)*@")

ENV_API_KEY = "WIRO_API_KEY"
ENV_API_SECRET = "WIRO_API_SECRET"
ENV_BASE_URL = "WIRO_BASE_URL"
ENV_SOCKET_URL = "WIRO_SOCKET_URL"
ENV_DOWNLOAD_MAX_BYTES = "WIRO_DOWNLOAD_MAX_BYTES"
ENV_DOWNLOAD_TIMEOUT = "WIRO_DOWNLOAD_TIMEOUT"


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
        key_setting = "api_key" if api_key is not None else ENV_API_KEY
        secret_setting = "api_secret" if api_secret is not None else ENV_API_SECRET
        if api_secret is None:
            api_secret = os.environ.get(ENV_API_SECRET) if api_key is None else None
        if not key:
            raise ConfigurationError(
                key_setting,
                f"No Wiro API key: pass api_key= or set {ENV_API_KEY} (and {ENV_API_SECRET} for signature mode).",
            )
        check_credential(key, f"The Wiro API key ({key_setting})", key_setting)
        check_credential(api_secret or "", f"The Wiro API secret ({secret_setting})", secret_setting)
        return cls(api_key=key, api_secret=api_secret or None)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Credentials are not picklable: they must never be persisted")


def check_credential(value: str, what: str, setting: str) -> None:
    """`ConfigurationError` for a key or secret that no HTTP header can carry as given."""
    if value != value.strip() or any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise ConfigurationError(setting, f"{what} holds whitespace or non-ASCII characters: check how it was set.")


def resolve_base_url(base_url: str | None = None) -> str:
    """Argument, else `WIRO_BASE_URL`, else the public API; always without a trailing slash."""
    setting = "base_url" if base_url else ENV_BASE_URL
    url = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).strip()
    problem = _url_problem(url, ("http", "https"))
    if problem:
        raise ConfigurationError(setting, f"The Wiro base URL ({setting}) {problem} (got {shown_url(url)!r}).")
    return url.rstrip("/")


def _mask(value: str) -> str:
    return value[:4] + "..." if len(value) > 8 else "***"


def resolve_socket_url(socket_url: str | None, base_url: str) -> str | None:
    """Argument, else `WIRO_SOCKET_URL`, else Wiro's socket for Wiro's API; no socket for other servers
    unless one is named (an empty value turns it off)."""
    setting = "socket_url" if socket_url is not None else ENV_SOCKET_URL
    url = socket_url if socket_url is not None else os.environ.get(ENV_SOCKET_URL)
    if url is None:
        return DEFAULT_SOCKET_URL if base_url == DEFAULT_BASE_URL else None
    url = url.strip()
    problem = _url_problem(url, ("ws", "wss")) if url else None
    if problem:
        raise ConfigurationError(setting, f"The Wiro socket URL ({setting}) {problem} (got {shown_url(url)!r}).")
    return url or None


@dataclass(frozen=True)
class DownloadLimits:
    """How much one download may write when the API announces no size, and how long it may take."""

    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    timeout: float = DEFAULT_DOWNLOAD_TIMEOUT

    @classmethod
    def resolve(cls, max_bytes: int | None = None, timeout: float | None = None) -> DownloadLimits:
        """Arguments win; otherwise `WIRO_DOWNLOAD_MAX_BYTES` and `WIRO_DOWNLOAD_TIMEOUT`, else the
        defaults. `ConfigurationError` names a value that is not a positive number."""
        size = _positive("max_download_bytes", max_bytes, ENV_DOWNLOAD_MAX_BYTES, DEFAULT_MAX_DOWNLOAD_BYTES, int)
        seconds = _positive("download_timeout", timeout, ENV_DOWNLOAD_TIMEOUT, DEFAULT_DOWNLOAD_TIMEOUT, float)
        return cls(int(size), float(seconds))


def _positive(argument: str, given: float | None, variable: str, default: float, kind: type[float]) -> float:
    setting, raw = (argument, given) if given is not None else (variable, os.environ.get(variable, "").strip())
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = 0
    if isinstance(raw, bool) or not 0 < value < float("inf"):
        unit = "a whole number of bytes" if kind is int else "a number of seconds"
        raise ConfigurationError(setting, f"{setting} must be {unit} more than 0 (got {raw!r}).")
    return value


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client is built from (key, secret, base URL, socket URL, download limits), resolved and checked
    at once, so a bad setting stops a program before its first request rather than inside it."""

    credentials: Credentials
    base_url: str
    socket_url: str | None
    downloads: DownloadLimits = DownloadLimits()

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        socket_url: str | None = None,
    ) -> ClientConfig:
        """Arguments win over `WIRO_*`; `ConfigurationError` names the first bad setting."""
        credentials = Credentials.resolve(api_key, api_secret)
        base = resolve_base_url(base_url)
        return cls(credentials, base, resolve_socket_url(socket_url, base), DownloadLimits.resolve())


def _url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """What is wrong with `url` as an address of one of `schemes`, or None."""
    if not url.lower().startswith(tuple(f"{s}://" for s in schemes)):
        return "must start with " + " or ".join(f"{s}://" for s in schemes)
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # `.port` itself raises on one that is not a number up to 65535
            raise ValueError("port 0")
        if parts.scheme.lower() in ("http", "https"):
            httpx.URL(url)  # what the client will have to parse
    except (httpx.InvalidURL, ValueError):
        return "is not a valid URL"
    return None if parts.hostname else "has no host"


def without_userinfo(url: str) -> str:
    """`url` without the user:password it may carry (Wiro authenticates by key, never by them)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def shown_url(url: str) -> str:
    """The URL for a message, a log line or a file: any user:password it carries becomes `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)" if "@" in url else url[:200]
    if "@" not in parts.netloc:
        return url[:200]
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()[:200]


def masked_urls(text: str) -> str:
    """`text` with the user:password of every URL in it replaced by `***`, as `shown_url` shows one."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)

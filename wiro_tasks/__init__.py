"""A typed client for Wiro's HTTP API, and a local emulator of it (`wiro_tasks.emulator`).

The client modules here depend on httpx alone; Prefect appears only in `wiro_tasks.prefect_tasks`.
"""

from ._auth import NonceSource, WiroAuth, sign
from ._base import TaskStalledError, WaitTimeoutError
from ._config import DEFAULT_BASE_URL, ClientConfig, Credentials
from ._exceptions import (
    APIError,
    AuthenticationError,
    ConcurrencyLimitError,
    ConfigurationError,
    InputValidationError,
    InsufficientBalanceError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    TaskStateError,
    TransientError,
    UploadError,
    WiroConnectionError,
    WiroError,
)
from ._retry import PollSchedule, RetryPolicy
from .client import AsyncWiroClient, WiroClient
from .downloads import Download, DownloadError, DownloadRejectedError, DownloadTimeoutError, check_mp4
from .images import MAX_UPLOAD_BYTES, ImageCheckError, ImageInfo, check_image
from .inputs import (
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    ImageToVideoInput,
    ModelSpec,
    TextToVideoInput,
    model_spec,
)
from .pricing import PriceTier, Quote, Tool, ToolPrice
from .types import TERMINAL_STATUSES, Submission, Task, TaskOutput, TaskPage, TaskStatus, UploadedFile

__all__ = [
    "DEFAULT_BASE_URL",
    "IMAGE_TO_VIDEO",
    "MAX_UPLOAD_BYTES",
    "TERMINAL_STATUSES",
    "TEXT_TO_VIDEO",
    "APIError",
    "AsyncWiroClient",
    "AuthenticationError",
    "ClientConfig",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "Credentials",
    "Download",
    "DownloadError",
    "DownloadRejectedError",
    "DownloadTimeoutError",
    "ImageCheckError",
    "ImageInfo",
    "ImageToVideoInput",
    "InputValidationError",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "ModelSpec",
    "NonceSource",
    "NotFoundError",
    "PollSchedule",
    "PriceTier",
    "Quote",
    "RateLimitedError",
    "RetryPolicy",
    "Submission",
    "SubmitOutcomeUnknownError",
    "Task",
    "TaskOutput",
    "TaskPage",
    "TaskStalledError",
    "TaskStateError",
    "TaskStatus",
    "TextToVideoInput",
    "Tool",
    "ToolPrice",
    "TransientError",
    "UploadError",
    "UploadedFile",
    "WaitTimeoutError",
    "WiroAuth",
    "WiroClient",
    "WiroConnectionError",
    "WiroError",
    "check_image",
    "check_mp4",
    "model_spec",
    "sign",
]

"""Every error path of the client, against fake servers plugged into `httpx.MockTransport`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from wiro_tasks import (
    APIError,
    AuthenticationError,
    ClientConfig,
    ConcurrencyLimitError,
    ConfigurationError,
    InputValidationError,
    InsufficientBalanceError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    TaskStateError,
    TextToVideoInput,
    TransientError,
    WiroClient,
    WiroConnectionError,
)
from wiro_tasks._exceptions import parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]
INPUT = TextToVideoInput(prompt="a red fox")
TASK = {"id": "1", "status": "task_queue", "pexit": ""}


def wiro_error(code: int, message: str = "nope", status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"result": False, "errors": [{"code": code, "message": message}]})


def ok_task() -> httpx.Response:
    return httpx.Response(200, json={"result": True, "errors": [], "total": "1", "tasklist": [TASK]})


class Script:
    """Answers requests in order from a list; counts them."""

    def __init__(self, *answers: Handler | httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx.Response) else answer(request)


@pytest.fixture
def make_client() -> Iterator[Callable[[Script], WiroClient]]:
    clients: list[WiroClient] = []

    def make(script: Script) -> WiroClient:
        c = WiroClient(
            "k",
            "s",
            base_url="https://api.test/v1",
            transport=httpx.MockTransport(script),
            retry=RetryPolicy(max_retries=3, backoff=0.0),
        )
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (wiro_error(0, "Request parameter [numFrames] must be between 5 and 241"), InvalidRequestError),
        (wiro_error(1, "There is no task yet."), NotFoundError),
        (wiro_error(96, "You have reached your concurrent task limit."), ConcurrencyLimitError),
        (wiro_error(97, "Insufficient balance."), InsufficientBalanceError),
        (wiro_error(98, "Sign in required."), AuthenticationError),
        (wiro_error(99, "Bearer token invalid."), AuthenticationError),
        (wiro_error(0, "Project authorization is not valid.", 401), AuthenticationError),
        (httpx.Response(403, text="Forbidden"), AuthenticationError),
        (wiro_error(0, "Error parsing url.", 404), NotFoundError),
        (httpx.Response(404, text="Not Found"), NotFoundError),
        (httpx.Response(400, text="Bad Request"), InvalidRequestError),
        (wiro_error(42, "something new"), APIError),
    ],
)
def test_answers_become_specific_errors(
    make_client: Callable[[Script], WiroClient], response: httpx.Response, kind: type[APIError]
) -> None:
    script = Script(response)
    with pytest.raises(kind) as caught:
        make_client(script).run(INPUT)
    assert type(caught.value) is kind
    assert len(script.requests) == 1, "Run is never resent by the client"


def test_permanent_errors_on_reads_are_not_retried(make_client: Callable[[Script], WiroClient]) -> None:
    script = Script(wiro_error(1, "There is no task yet."))
    with pytest.raises(NotFoundError, match="There is no task yet"):
        make_client(script).detail("9")
    assert len(script.requests) == 1


def test_cancel_of_a_running_task_is_a_state_error(make_client: Callable[[Script], WiroClient]) -> None:
    with pytest.raises(TaskStateError):
        make_client(Script(wiro_error(1, "Task is not in a cancellable state."))).cancel("1")
    with pytest.raises(NotFoundError) as caught:
        make_client(Script(wiro_error(1, "There is no task yet."))).kill("1")
    assert type(caught.value) is NotFoundError


def test_reads_retry_transient_failures_then_succeed(make_client: Callable[[Script], WiroClient]) -> None:
    script = Script(
        httpx.Response(503, text="<html>busy</html>", headers={"content-type": "text/html"}),
        httpx.Response(429, headers={"Retry-After": "0"}, json={"result": False, "errors": []}),
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        ok_task(),
    )
    client = make_client(script)
    client.retry = RetryPolicy(max_retries=4, backoff=0.0)
    assert client.detail("1").id == "1"
    assert len(script.requests) == 5
    nonces = [r.headers["x-nonce"] for r in script.requests]
    assert len(set(nonces)) == 5, "each attempt is signed afresh"


def test_reads_give_up_after_max_retries(make_client: Callable[[Script], WiroClient]) -> None:
    script = Script(httpx.Response(502, text="bad gateway"))
    with pytest.raises(TransientError) as caught:
        make_client(script).detail("1")
    assert caught.value.status_code == 502
    assert len(script.requests) == 4


def test_read_connection_failure_is_a_connection_error(make_client: Callable[[Script], WiroClient]) -> None:
    with pytest.raises(WiroConnectionError):
        make_client(Script(httpx.ReadTimeout("slow"))).list_tasks()


def test_429_on_run_is_rate_limited_and_not_retried(make_client: Callable[[Script], WiroClient]) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}, json={"result": False, "errors": []}))
    with pytest.raises(RateLimitedError) as caught:
        make_client(script).run(INPUT)
    assert caught.value.retry_after == 7.0
    assert caught.value.retryable
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="oops"),
        httpx.Response(504, text="gateway timeout"),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json={"result": True, "errors": []}),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        httpx.WriteError("broken pipe"),
    ],
)
def test_run_with_unknown_outcome_is_never_resent(
    make_client: Callable[[Script], WiroClient], failure: httpx.Response | Exception
) -> None:
    script = Script(failure)
    with pytest.raises(SubmitOutcomeUnknownError):
        make_client(script).run(INPUT)
    assert len(script.requests) == 1


def test_run_that_never_connected_is_safe_to_resend(make_client: Callable[[Script], WiroClient]) -> None:
    script = Script(httpx.ConnectError("connection refused"))
    with pytest.raises(WiroConnectionError) as caught:
        make_client(script).run(INPUT)
    assert caught.value.retryable
    assert len(script.requests) == 1


def test_invalid_input_never_reaches_the_server(make_client: Callable[[Script], WiroClient]) -> None:
    script = Script(ok_task())
    with pytest.raises(InputValidationError, match="numFrames"):
        make_client(script).run({"prompt": "p", "numFrames": 100})
    assert script.requests == []


def test_run_answer_is_read_at_the_top_level(make_client: Callable[[Script], WiroClient]) -> None:
    answer = {"errors": [], "taskid": "2221", "socketaccesstoken": "eDcC", "result": True}
    script = Script(httpx.Response(200, json=answer))
    submission = make_client(script).run(INPUT)
    assert (submission.task_id, submission.socket_token) == ("2221", "eDcC")
    request = script.requests[0]
    assert request.url.path == "/v1/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video"
    assert request.headers["content-type"] == "application/json"


def test_kill_by_token_sends_both_field_names(make_client: Callable[[Script], WiroClient]) -> None:
    import json

    script = Script(httpx.Response(200, json={"result": True, "errors": [], "tasklist": [TASK]}))
    make_client(script).kill(socket_token="tok")
    assert json.loads(script.requests[0].content) == {"socketaccesstoken": "tok", "tasktoken": "tok"}


@pytest.mark.parametrize(
    ("base_url", "key"),
    [("localhost:8765/v1", "k"), ("https://api.test/v1", "k\n"), ("https://api.test/v1", "kéy")],
)
def test_misconfiguration_is_a_value_error_not_a_lost_answer(base_url: str, key: str) -> None:
    with pytest.raises(ValueError, match=r"base URL|whitespace or non-ASCII"):
        WiroClient(key, "s", base_url=base_url)


@pytest.mark.parametrize(
    ("variables", "setting", "words"),
    [
        ({"WIRO_API_KEY": "k", "WIRO_BASE_URL": "ftp://example.com/v1"}, "WIRO_BASE_URL", "http:// or https://"),
        ({"WIRO_API_KEY": "k", "WIRO_BASE_URL": "http://h:99999/v1"}, "WIRO_BASE_URL", "not a valid URL"),
        ({"WIRO_API_KEY": "k", "WIRO_SOCKET_URL": "ws://"}, "WIRO_SOCKET_URL", "has no host"),
        ({"WIRO_API_KEY": ""}, "WIRO_API_KEY", "No Wiro API key"),
        ({"WIRO_API_KEY": "k", "WIRO_API_SECRET": "s\n"}, "WIRO_API_SECRET", "whitespace"),
    ],
)
def test_client_config_names_the_bad_setting(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], setting: str, words: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        ClientConfig.resolve()
    assert caught.value.setting == setting
    assert setting in str(caught.value)
    assert words in str(caught.value)


def test_client_config_hides_a_password_in_the_url() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ClientConfig.resolve("k", base_url="ftp://user:hunter2@example.com/v1")
    assert "hunter2" not in str(caught.value)
    assert caught.value.setting == "base_url"


def test_client_config_resolves_everything_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRO_API_KEY", "k")
    monkeypatch.setenv("WIRO_SOCKET_URL", "ws://127.0.0.1:9/socket/v1")
    config = ClientConfig.resolve(base_url="http://127.0.0.1:9/v1/")
    assert (config.base_url, config.socket_url) == ("http://127.0.0.1:9/v1", "ws://127.0.0.1:9/socket/v1")
    assert config.credentials.api_key == "k"


def test_list_page_reads_the_total_and_short_pages(make_client: Callable[[Script], WiroClient]) -> None:
    answer = {"result": True, "errors": [], "total": "130", "tasklist": [TASK, {**TASK, "id": "0"}]}
    page = make_client(Script(httpx.Response(200, json=answer))).list_page(limit=100)
    assert ([t.id for t in page.tasks], page.total) == (["1", "0"], 130)
    assert make_client(Script(ok_task())).list_page().total == 1
    no_total = {"result": True, "errors": [], "total": "many", "tasklist": []}
    assert make_client(Script(httpx.Response(200, json=no_total))).list_page().total is None


def test_detail_needs_an_id_or_a_token(make_client: Callable[[Script], WiroClient]) -> None:
    with pytest.raises(ValueError, match="task_id or a socket_token"):
        make_client(Script(ok_task())).detail()


def test_errors_read_well() -> None:
    error = APIError("Insufficient balance.", code=97, status_code=200, endpoint="/Run/x/y")
    assert str(error) == "/Run/x/y: Insufficient balance. (code 97)"


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


def test_retry_policy_honours_retry_after_and_caps_backoff() -> None:
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_backoff=4.0)
    limited = RateLimitedError("slow down", status_code=429, retry_after=2.5)
    assert policy.delay(limited, 0) == 2.5
    delays = [policy.delay(TransientError("x"), n) for n in range(6)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert policy.should_retry(limited, 2)
    assert not policy.should_retry(limited, 3)

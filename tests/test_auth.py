"""Request signing, nonces, and keeping the secret out of sight."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from wiro_tasks import Credentials, NonceSource, WiroAuth, WiroClient, WiroError, sign

from .conftest import API_KEY, API_SECRET


def test_signature_matches_openssl_vector() -> None:
    # echo -n "my-secret1700000000000" | openssl dgst -sha256 -hmac "my-api-key"
    expected = "9098ffb132d24b9eab6a3d6327d6dc22f8b8fb9eb3f0fb2eb6926da5dad1874f"
    assert sign("my-api-key", "my-secret", "1700000000000") == expected


def test_signature_of_non_ascii_secret_is_utf8() -> None:
    # echo -n "s3cr3t-ÄÖ42" | openssl dgst -sha256 -hmac "key"
    assert sign("key", "s3cr3t-ÄÖ", "42") == "105d3d5fb0188f50857accb552557f5e827ec4c42d2043393eebe89e1738ae58"


def _headers_seen(auth: WiroAuth) -> httpx.Headers:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http:
        http.post("https://api.example/v1/Task/Detail", json={})
    return seen[0]


def test_signature_mode_sends_key_nonce_and_signature() -> None:
    headers = _headers_seen(WiroAuth(Credentials(API_KEY, API_SECRET)))
    assert headers["x-api-key"] == API_KEY
    assert headers["x-signature"] == sign(API_KEY, API_SECRET, headers["x-nonce"])


def test_key_only_mode_sends_the_key_alone() -> None:
    headers = _headers_seen(WiroAuth(Credentials("k")))
    assert headers["x-api-key"] == "k"
    assert "x-nonce" not in headers
    assert "x-signature" not in headers


def test_nonces_never_repeat_across_threads() -> None:
    source = NonceSource()
    results: list[list[int]] = []
    barrier = threading.Barrier(8)

    def draw() -> None:
        barrier.wait()
        results.append([int(source.next()) for _ in range(500)])

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [n for chunk in results for n in chunk]
    assert len(every) == len(set(every)) == 4000
    assert all(chunk == sorted(chunk) for chunk in results), "each thread sees increasing nonces"


def test_nonces_never_repeat_across_event_loops() -> None:
    source = NonceSource()
    drawn: list[int] = []

    async def many() -> None:
        async def one() -> None:
            drawn.append(int(source.next()))

        await asyncio.gather(*(one() for _ in range(300)))

    threads = [threading.Thread(target=lambda: asyncio.run(many())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(drawn) == len(set(drawn)) == 1200


def test_nonce_follows_the_clock_in_milliseconds() -> None:
    import time

    nonce = NonceSource().next()
    assert len(nonce) == 13, "a unix time in milliseconds, as Wiro's WiroKit SDK sends"
    assert abs(int(nonce) - time.time() * 1000) < 5000


def test_secret_is_absent_from_reprs() -> None:
    creds = Credentials(API_KEY, API_SECRET)
    with WiroClient(API_KEY, API_SECRET, base_url="http://127.0.0.1:9/v1") as client:
        for text in (repr(creds), str(creds), repr(WiroAuth(creds)), repr(client)):
            assert API_SECRET not in text
            assert API_KEY not in text


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRO_API_KEY", "env-key")
    monkeypatch.setenv("WIRO_API_SECRET", "env-secret")
    monkeypatch.setenv("WIRO_BASE_URL", "http://127.0.0.1:1/v1/")
    with WiroClient() as client:
        assert client.credentials == Credentials("env-key", "env-secret")
        assert client.base_url == "http://127.0.0.1:1/v1"
    with WiroClient("arg-key") as client:
        assert client.credentials == Credentials("arg-key"), "an explicit key does not borrow the env secret"


def test_missing_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="WIRO_API_KEY"):
        WiroClient()


def test_nonces_differ_between_a_parent_and_its_fork() -> None:
    import os

    source = NonceSource()
    for _ in range(200):
        source.next()  # run ahead of the clock, as after a burst
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its nonces and leave at once
        os.write(write, " ".join(source.next() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    parent = {source.next() for _ in range(50)}
    os.waitpid(pid, 0)
    child = set(os.read(read, 1 << 16).decode().split())
    os.close(read)
    assert len(child) == 50
    assert parent.isdisjoint(child)


def test_credentials_refuse_to_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError, match="never be persisted"):
        pickle.dumps(Credentials(API_KEY, API_SECRET))


def test_secret_stays_out_of_logs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"result": False, "errors": [{"code": 0, "message": "nope"}]})

    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(refuse)
    with (
        WiroClient(API_KEY, API_SECRET, base_url="https://api.test/v1", transport=transport) as client,
        pytest.raises(WiroError) as caught,
    ):
        client.detail("1")
    assert caplog.records, "the client logs its requests at DEBUG"
    text = caplog.text + str(caught.value) + repr(caught.value)
    assert API_SECRET not in text

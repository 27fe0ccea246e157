"""The claims registry (flows/store/claims.py): no Wiro task is ever taken by two sweeps of one
machine, in real directories under tmp_path."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flows.store.claims import ENV_STATE, Claims, account_key, state_root, task_mark

API = "https://api.wiro.ai/v1"


def registry(tmp_path: Path, out: str, account: str = "acct") -> Claims:
    return Claims(tmp_path / out, account, root=tmp_path / "state")


def test_the_first_sweep_to_claim_a_task_keeps_it(tmp_path: Path) -> None:
    a, b = registry(tmp_path, "a"), registry(tmp_path, "b")
    assert a.claim("1234", "row-1")
    assert not b.claim("1234", "row-9"), "another OUT cannot take a claimed task"
    assert a.claim("1234", "row-1"), "claiming one's own task again is fine (a resumed sweep)"
    assert not a.claim("1234", "row-2"), "nor can another row of the same OUT"
    assert a.holder("1234") == (str((tmp_path / "a").resolve()), "row-1")
    assert b.held_elsewhere("1234")
    assert not a.held_elsewhere("1234"), "an OUT's own claims do not count against it"
    assert a.holder("5678") is None
    assert not a.held_elsewhere("5678")


def test_a_claim_is_one_readable_file_per_task_and_account(tmp_path: Path) -> None:
    a = registry(tmp_path, "a")
    a.claim("1234", "row-1")
    other_account = registry(tmp_path, "b", account="other")
    assert other_account.claim("1234", "row-7"), "task ids of another account are other tasks"
    assert sorted(
        p.relative_to(tmp_path / "state").as_posix() for p in (tmp_path / "state").rglob("*") if p.is_file()
    ) == [
        "claims/acct/1234",
        "claims/other/1234",
    ], "no temporary file is left behind"


def test_an_odd_task_id_gets_a_safe_file_name(tmp_path: Path) -> None:
    a, b = registry(tmp_path, "a"), registry(tmp_path, "b")
    odd = "../../etc/passwd"
    assert a.claim(odd, "row-1")
    assert not b.claim(odd, "row-2")
    names = [p.name for p in (tmp_path / "state" / "claims" / "acct").iterdir()]
    assert len(names) == 1
    assert names[0].startswith("h")
    assert "/" not in names[0]
    assert not (tmp_path / "etc").exists()


def test_a_torn_claim_file_belongs_to_nobody(tmp_path: Path) -> None:
    a, b = registry(tmp_path, "a"), registry(tmp_path, "b")
    (tmp_path / "state" / "claims" / "acct" / "42").write_text('{"out": "/somewh')  # a write cut short
    assert a.holder("42") is None
    assert b.claim("42", "row-1"), "a torn claim is taken over"
    assert not a.claim("42", "row-2")


def test_many_sweeps_racing_for_one_task_give_it_to_exactly_one(tmp_path: Path) -> None:
    sweeps = [registry(tmp_path, f"out{n}") for n in range(8)]
    won: list[int] = []
    start = threading.Barrier(len(sweeps))

    def race(n: int) -> None:
        start.wait()
        if sweeps[n].claim("777", f"row-{n}"):
            won.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(sweeps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1, won
    assert sweeps[0].holder("777") == (str((tmp_path / f"out{won[0]}").resolve()), f"row-{won[0]}")


def test_the_account_key_hides_the_api_key_and_tells_accounts_apart() -> None:
    key = account_key(API, "secret-api-key-123")
    assert len(key) == 16
    assert "secret" not in key
    assert key == account_key(API, "secret-api-key-123"), "stable across runs"
    assert key != account_key(API, "another-key")
    assert key != account_key("http://127.0.0.1:8000/v1", "secret-api-key-123"), "the emulator is another account"


def test_the_state_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_STATE, str(tmp_path / "mine"))
    assert state_root() == tmp_path / "mine"
    monkeypatch.delenv(ENV_STATE)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_root() == tmp_path / "xdg" / "wiro-sweep"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_root() == tmp_path / "home" / ".local" / "state" / "wiro-sweep"


def test_claims_without_a_root_live_under_the_state_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_STATE, str(tmp_path / "state"))
    Claims(tmp_path / "out", "acct").claim("5", "row-1")
    assert (tmp_path / "state" / "claims" / "acct" / "5").is_file()


def test_a_claim_made_for_another_task_with_the_id_is_taken_over(tmp_path: Path) -> None:
    """A server that started its ids again: OUT a's claim on 1234 was for its task, whose socket
    token it recorded (hashed). OUT b's Run answer names 1234 with another token."""
    a, b = registry(tmp_path, "a"), registry(tmp_path, "b")
    old, new = task_mark("token-of-a-task"), task_mark("token-of-another-task")
    assert a.claim("1234", "row-1", old)
    assert a.recorded_task("1234") == old
    assert "token-of-a-task" not in (tmp_path / "state" / "claims" / "acct" / "1234").read_text(), "hashed"
    assert not b.claim("1234", "row-9", new), "a claim still blocks by itself"
    assert not b.take_over("1234", "row-9", old), "never over a claim for the same task"
    assert b.take_over("1234", "row-9", new)
    assert b.holder("1234") == (str((tmp_path / "b").resolve()), "row-9")
    assert b.recorded_task("1234") == new
    assert not a.claim("1234", "row-1", old), "the old claim is gone"
    assert a.claim("5678", "row-2")
    assert not b.take_over("5678", "row-3", new), "a claim that recorded no task is never taken over"
    assert task_mark("") == ""

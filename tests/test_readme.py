"""The README's first screen, as a newcomer follows it: short, and its commands work as written.

The commands are read out of the README's fenced code blocks, so a README that changes to
something broken fails here. They run in a fresh clone of this checkout's commit. To keep it fast
the clone does not install its own virtualenv: its `.venv/` is made of links to the one running
these tests (with the stamp `scripts/bootstrap.sh` looks for, so nothing is installed into it), and
`PYTHONPATH` puts the clone's code first, which `test_the_first_screen_works_in_a_fresh_clone`
checks before trusting it: the shared venv's editable install points at this checkout, not at the
clone.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

from wiro_tasks import DEFAULT_BASE_URL

from .conftest import EmulatorFactory, free_port

ROOT = Path(__file__).resolve().parent.parent
FIRST_SCREEN = 60  # lines
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def blocks(readme: str) -> list[tuple[int, list[str]]]:
    """Each fenced code block: the line it starts on (1-based), and its lines."""
    return [(readme[: m.start()].count("\n") + 1, m.group(2).splitlines()) for m in FENCE.finditer(readme)]


def block_with(readme: str, text: str) -> tuple[int, list[str]]:
    """The first fenced block with a line that starts with `text`."""
    found = [(start, lines) for start, lines in blocks(readme) if any(line.startswith(text) for line in lines)]
    assert found, f"the README has no code block starting a line with {text!r}"
    return found[0]


def words(line: str) -> list[str]:
    """A README command line as its arguments, without its `# comment`."""
    return shlex.split(line, comments=True)


def test_the_readme_is_short_and_its_first_screen_says_how_to_reach_the_command() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 200, f"the README has {len(lines)} lines; the rest belongs in docs/"
    first = "\n".join(lines[:FIRST_SCREEN])
    assert ".venv/bin/wiro-sweep" in first or "source .venv/bin/activate" in first, "where wiro-sweep is"
    for start, block in blocks(readme):
        for line in block:
            if start <= FIRST_SCREEN and line.split()[:1] == ["wiro-sweep"]:
                raise AssertionError(f"{line!r}: a bare wiro-sweep is 'command not found' in a new shell")
    picture = re.search(r"!\[[^]]+\]\(([^)]+\.png)\)", first)
    assert picture, "a picture of the report on the first screen"
    png = ROOT / picture.group(1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size < 300_000


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    start, block = block_with(readme, "./scripts/test.sh")
    assert start <= FIRST_SCREEN
    command = next(words(line) for line in block if line.startswith("./scripts/test.sh"))
    ci = [words(line) for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("exec ")]
    assert ci == [["exec", *command]], "the README's test command, word for word"


def test_the_links_of_the_readme_and_docs_lead_somewhere() -> None:
    """Each relative link names a file that exists, and a #section that is one of its headings."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in anchors(linked):
                broken.append(f"{page.name}: {target} (no such section)")
    assert not broken, broken


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a markdown page's headings."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_first_screen_works_in_a_fresh_clone(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    clone = tmp_path / "wiro-sweep"
    commit = git("rev-parse", "HEAD", cwd=ROOT)
    git("clone", "--quiet", "--no-checkout", str(ROOT), str(clone), cwd=tmp_path)
    git("checkout", "--quiet", commit, cwd=clone)
    link_venv(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WIRO_", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(clone), PREFECT_HOME=str(tmp_path / "prefect-home"),
               WIRO_SWEEP_STATE=str(tmp_path / "state"))  # fmt: skip
    imported = subprocess.run([".venv/bin/python", "-c", "import flows, wiro_tasks; print(flows.__file__); "
                               "print(wiro_tasks.__file__)"], cwd=clone, env=env, capture_output=True, text=True,
                              check=True)  # fmt: skip
    assert all(Path(f).is_relative_to(clone) for f in imported.stdout.split()), "the clone's code runs"

    readme = (clone / "README.md").read_text()
    start, block = block_with(readme, "./scripts/demo.sh")
    assert start <= FIRST_SCREEN
    demo, report = [words(line) for line in block if words(line)]
    assert demo == ["./scripts/demo.sh"]
    done = subprocess.run(demo, cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (clone / "demo-out" / "report.html").is_file()
    printed = [words(line) for line in done.stdout.splitlines() if line.strip().startswith(".venv/bin/")]
    assert report in printed, f"the demo's last lines name the README's next command: {done.stdout[-600:]}"

    assert report[:2] == [".venv/bin/wiro-sweep", "serve"], report
    port = free_port()  # the README's port (4201) may be taken on a shared machine
    served = subprocess.Popen([*report, "--port", str(port)], cwd=clone, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        index = get_when_up(f"http://127.0.0.1:{port}/", served)
        page = re.search(r'href="([^"]+/report\.html)"', index.text)
        assert page, index.text
        got = httpx.get(f"http://127.0.0.1:{port}{page.group(1)}", timeout=30)
        assert got.status_code == 200
        assert got.content == (clone / "demo-out" / "report.html").read_bytes()
        rows = len(pd.read_csv(clone / "demo-out" / "manifest.csv"))
        assert rows > 0
        assert got.text.count('data-status="succeeded"') == rows, "every row of the demo, played"
    finally:
        os.killpg(served.pid, signal.SIGINT)  # Ctrl-C, as the README says
        output = served.communicate(timeout=30)[0]
    assert "Serving" in output, output

    api_start, api = block_with(readme, "export WIRO_API_KEY=")
    assert api_start <= FIRST_SCREEN
    base = next(words(line)[1] for line in api if line.startswith("export WIRO_BASE_URL="))
    assert base == f"WIRO_BASE_URL={DEFAULT_BASE_URL}", "the README names the real default"
    dry_run = next(words(line) for line in api if "--dry-run" in line)
    assert "--budget" in dry_run
    emulator = make_emulator()  # stands in for Wiro: the key, secret and base URL of lines 1 and 2
    done = subprocess.run(dry_run, cwd=clone, env={**env, **emulator.env()}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nothing was submitted (--dry-run)." in done.stdout, done.stdout
    assert "Budget $1 " in done.stdout, done.stdout
    assert emulator.account.stats()["tasks"] == 0


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def link_venv(clone: Path) -> None:
    """`clone/.venv`: the running virtualenv's parts linked in, and the stamp bootstrap.sh checks for
    the clone's pyproject.toml, so the scripts install nothing (into a venv other tests share)."""
    venv = clone / ".venv"
    venv.mkdir()
    for part in Path(sys.prefix).iterdir():
        if not part.name.startswith(".installed-"):
            (venv / part.name).symlink_to(part)
    stamp = hashlib.sha256((clone / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (venv / f".installed-{stamp}").touch()


def get_when_up(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        try:
            return httpx.get(url, timeout=5).raise_for_status()
        except httpx.TransportError:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, f"nothing answered on {url}"
            time.sleep(0.3)

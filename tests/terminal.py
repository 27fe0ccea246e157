"""A command run in a pseudo-terminal, as in a person's terminal (a live progress bar, Ctrl-C as
a keystroke), and the lines its screen ends up showing."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Screen:
    code: int
    raw: str

    @property
    def lines(self) -> list[str]:
        """Each line as last drawn (a bar redrawn with \\r shows its final state), colours removed."""
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.raw)
        lines = []
        for line in text.split("\n"):
            parts = [p for p in line.split("\r") if p.strip()]
            if parts:
                lines.append(parts[-1].rstrip())
        return lines

    @property
    def frames(self) -> list[str]:
        """Every state the progress bar was drawn in, in order."""
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.raw)
        return [part.rstrip() for part in re.split(r"[\r\n]", text) if part.startswith("sweep ")]


def run_in_terminal(
    command: list[str], env: dict[str, str], cwd: Path, *, ctrl_c_when: str = "", timeout: float = 240
) -> Screen:
    """Run `command` on a 160-column pty; press Ctrl-C a second after `ctrl_c_when` shows."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))

    def own_the_terminal() -> None:  # a session of its own, this pty as its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=cwd,
                               start_new_session=True, preexec_fn=own_the_terminal)  # fmt: skip
    os.close(terminal)
    output, pressed, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready = select.select([controller], [], [], 0.1)[0]
            chunk = b""
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the other end closed
                    chunk = b""
                output += chunk
            if ctrl_c_when and not pressed and ctrl_c_when.encode() in output:
                time.sleep(1.0)
                os.write(controller, b"\x03")
                pressed = True
            if not chunk and process.poll() is not None:
                break
        else:
            os.killpg(process.pid, 9)
            process.wait()  # reaped here, or its ResourceWarning fails whichever test runs next
            raise AssertionError(f"still running after {timeout} s:\n{output.decode(errors='replace')[-3000:]}")
    finally:
        os.close(controller)
    return Screen(process.wait(), output.decode("utf-8", errors="replace"))

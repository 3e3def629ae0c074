"""A `driftline` command run as a child process, as a user runs it: its output collected
line by line (and copied to a log file when given), its HTTP port read from the line it
prints once listening. The serving bench and the end-to-end tests drive the service this way."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_LISTENING = re.compile(r"HTTP API on http://127\.0\.0\.1:(\d+)")


class Child:
    """``python -m stream.cli ARGS`` with ``env``; ``port`` once its HTTP API line is printed."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.log = log
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("w") if self.log is not None else contextlib.nullcontext() as f:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if f is not None:
                    f.write(line)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines[-n:])

    def port(self, timeout_s: float = 120) -> int:
        """The port of its HTTP API; RuntimeError with its last output if it exits or never listens."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := _LISTENING.search(line):
                    return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before its HTTP API listened:\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"no HTTP API line within {timeout_s:g} s:\n{self.tail()}")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C does; its exit status (killed after 60 s without one)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

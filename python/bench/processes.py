"""Processes the benchmarks start: ktune servers and workers, waited for by what they print."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def start(cmd: list[str], log: str) -> subprocess.Popen:
    """Starts `cmd` with stdout and stderr into the file `log`."""
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_for_text(path: str, text: str, seconds: float = 120) -> str:
    """The file's contents once `text` is in them; exits saying so after `seconds` (generous: on
    a busy machine a binary alone can take seconds to load)."""
    end = time.time() + seconds
    while time.time() < end:
        content = Path(path).read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.1)
    raise SystemExit(f"'{text}' not seen in {path} within {seconds} s:\n" + Path(path).read_text())


def listening_port(log: str) -> str:
    """The port a `ktune serve` writing to `log` listens on, once it says so."""
    return wait_for_text(log, "listening on port ").split("listening on port ")[1].split()[0]


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM in reverse start order (workers leave before their server), SIGKILL after 60 s."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()

"""Fixtures: real `ktune serve` (and `ktune worker`) processes, started and stopped by the tests.

KTUNE_BIN names the ktune binary (default: <repo>/build/cli/ktune). KTUNE_DATASETS_DIR names
the recorded spaces' folder (default: <repo>/../shared/datasets). A missing binary or dataset
fails the tests (it does not skip them).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

import ktune

REPO = Path(__file__).resolve().parents[2]
KTUNE_BIN = Path(os.environ.get("KTUNE_BIN", REPO / "build" / "cli" / "ktune"))
DATASETS = Path(os.environ.get("KTUNE_DATASETS_DIR", REPO.parent / "shared" / "datasets"))
# A recorded Kernel Tuner space of pnpoly on an RTX 2080 Ti (device class RTX_2080_Ti, family
# turing, 4092 records of which 3734 ok) and the same kernel on an RTX Titan (RTX_Titan).
PNPOLY_2080TI = DATASETS / "spaces" / "pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz"
PNPOLY_TITAN = DATASETS / "spaces" / "pnpoly_RTX_Titan_kernel_tuner_cache.json.gz"

START_DEADLINE_S = 120.0  # a busy machine may take long to start a server


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} not found at {path} (set KTUNE_BIN / KTUNE_DATASETS_DIR)",
                    pytrace=False)
    return path


class Process:
    """A ktune child process whose output (stdout and stderr) is collected line by line."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._log = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, deadline_s: float = START_DEADLINE_S) -> re.Match:
        """The first output line matching ``pattern``; fails after the deadline or if the process
        exits first."""
        regex = re.compile(pattern)
        end = time.monotonic() + deadline_s
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if m := regex.search(line):
                        return m
                seen = len(self.lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.args[:2]} exited ({self.proc.returncode}) before "
                                       f"printing /{pattern}/:\n" + "\n".join(self.lines[-20:]))
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.args[:2]} printed no /{pattern}/ within "
                                       f"{deadline_s} s:\n" + "\n".join(self.lines[-20:]))
                self._cond.wait(min(left, 0.5))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._reader.join(timeout=5)
        self._log.close()


class Server:
    """`ktune serve --listen 127.0.0.1:0` (a free port, read from its "listening on port N")."""

    def __init__(self, workdir: Path, *extra: str, db: Optional[Path] = None) -> None:
        self.db = db or workdir / "ktune.db"
        self.process = Process([str(KTUNE_BIN), "serve", "--listen", "127.0.0.1:0", "--db",
                                str(self.db), *extra], workdir / "serve.log")
        self.port = int(self.process.wait_for(r"listening on port (\d+)").group(1))
        self.address = f"127.0.0.1:{self.port}"
        self.workers: list[Process] = []

    def client(self, **kwargs) -> ktune.Client:
        return ktune.Client(self.address, **kwargs)

    def add_worker(self, device: str, log: Path) -> Process:
        """`ktune worker --device DEVICE`, waited for until registered."""
        w = Process([str(KTUNE_BIN), "worker", "--server", self.address, "--device", device], log)
        self.workers.append(w)
        w.wait_for(r"worker_registered")
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.process.stop()


def ktune_cli(*args: str) -> subprocess.CompletedProcess:
    """Runs the ktune command; fails the test on a non-zero exit."""
    out = subprocess.run([str(KTUNE_BIN), *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"ktune {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="session")
def ktune_bin() -> Path:
    return _require(KTUNE_BIN, "the ktune binary")


@pytest.fixture(scope="session")
def pnpoly_file() -> Path:
    return _require(PNPOLY_2080TI, "the recorded pnpoly space")


@pytest.fixture(scope="module")
def records_server(ktune_bin, pnpoly_file, tmp_path_factory):
    """A server on a database holding the recorded pnpoly space (imported with `ktune db import`
    before the server starts)."""
    workdir = tmp_path_factory.mktemp("records")
    ktune_cli("db", "import", str(pnpoly_file), "--db", str(workdir / "ktune.db"))
    server = Server(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replay_server(ktune_bin, pnpoly_file, tmp_path_factory):
    """A server serving two recorded spaces (--replay), with a replay worker for the RTX 2080 Ti
    one only: jobs for RTX_Titan stay queued (nothing measures them)."""
    workdir = tmp_path_factory.mktemp("replay")
    titan = _require(PNPOLY_TITAN, "the recorded pnpoly space (RTX Titan)")
    server = Server(workdir, "--replay", str(pnpoly_file), str(titan))
    server.add_worker(f"replay:{pnpoly_file}", workdir / "worker.log")
    yield server
    server.stop()


@pytest.fixture()
def empty_server(ktune_bin, tmp_path):
    server = Server(tmp_path)
    yield server
    server.stop()

"""The bundled Salesforce sandbox in its own process, so serving pages costs no contender's RSS."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLIENT_ID = "flowbridge-sandbox"
CLIENT_SECRET = "sandbox-secret"
READY = re.compile(r"Salesforce sandbox listening on (http://\S+)")
START_TIMEOUT_S = 300  # it builds all N records before it listens


class SandboxError(RuntimeError):
    pass


@contextmanager
def running(records: int, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """Start `python -m flow_assets.sandbox` on a free port; its URL; stopped whatever happens."""
    log = workdir / f"sandbox-{records}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            # Port 0: the sandbox binds a free port itself and prints it, so there is no race.
            [
                sys.executable,
                "-m",
                "flow_assets.sandbox",
                "--port",
                "0",
                "--records",
                str(records),
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                CLIENT_SECRET,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=workdir,
            env=env,
        )
        try:
            yield _wait_ready(proc, log)
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    buffered = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            buffered += chunk
            match = READY.search(buffered.decode(errors="replace"))
            if match:
                return match.group(1)
            if not chunk:
                break  # stdout closed: the process is exiting
        if proc.poll() is not None:
            break
    tail = log.read_text(errors="replace")[-2000:]
    raise SandboxError(f"the sandbox did not start (exit {proc.poll()}): {tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the sandbox stops cleanly on it), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()

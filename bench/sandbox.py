"""The bundled Salesforce sandbox in its own process, so serving pages costs no contender's RSS.

It keeps the pages it renders in a page cache big enough for the whole benchmark query, and
`warm_up` reads that query once before the timed rounds: a real org's serving cost is not on
the client's machine, so from then on the figures measure the clients, not the sandbox.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import FIELDS, PAGE_HEADERS, QUERY_PATH, SOQL, Sandbox

CLIENT_ID = "flowbridge-sandbox"
CLIENT_SECRET = "sandbox-secret"
READY = re.compile(r"Salesforce sandbox listening on (http://\S+)")
START_TIMEOUT_S = 300  # it builds all N records before it listens
# A record of the benchmark query is ~360 bytes of JSON: ~105 of `attributes` (type, url) and
# ~32 per field (name, quotes, value). Estimated high, then half as much again for headroom.
ATTRIBUTES_BYTES, BYTES_PER_FIELD, HEADROOM, MIN_CACHE_MB = 110, 40, 1.5, 64


class SandboxError(RuntimeError):
    pass


def page_cache_mb(records: int, fields: int = len(FIELDS)) -> int:
    """MB of page cache that holds every page of the benchmark query over `records` records."""
    per_record = ATTRIBUTES_BYTES + BYTES_PER_FIELD * fields
    return max(MIN_CACHE_MB, math.ceil(records * per_record * HEADROOM / 2**20))


@contextmanager
def running(records: int, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """Start `python -m flow_assets.sandbox` on a free port, with a page cache sized for
    `records`; its URL; stopped whatever happens."""
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
                "--page-cache-mb",
                str(page_cache_mb(records)),
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


@dataclass
class WarmUp:
    records: int
    pages: int
    seconds: float
    cached_mb: float  # the page cache's contents afterwards


def warm_up(url: str, client_id: str, client_secret: str) -> WarmUp:
    """Read the query every contender issues (SOQL, API version and batch size alike) once,
    so the sandbox holds its pages; then zero the sandbox's counters for the timed rounds."""
    token, base = Sandbox(url, client_id, client_secret).token()
    started = time.perf_counter()
    records = pages = 0
    with requests.Session() as session:
        session.headers.update({"Authorization": f"Bearer {token}", **PAGE_HEADERS})
        answer = session.get(base + QUERY_PATH, params={"q": SOQL}, timeout=300)
        while True:
            answer.raise_for_status()
            page = json.loads(answer.content)
            records, pages = records + len(page["records"]), pages + 1
            if page["done"]:
                break
            answer = session.get(base + page["nextRecordsUrl"], timeout=300)
    seconds = time.perf_counter() - started
    stats = cache_stats(url)
    if stats["page_cache_misses"] != pages:
        raise SandboxError(f"the warm-up read {pages} pages but the page cache says {stats}")
    requests.delete(url + "/__sandbox/stats", timeout=30).raise_for_status()
    return WarmUp(records, pages, seconds, stats["page_cache_bytes"] / 2**20)


def cache_stats(url: str) -> dict[str, int]:
    """The sandbox's page-cache counters (since the warm-up)."""
    answer = requests.get(url + "/__sandbox/stats", timeout=30)
    answer.raise_for_status()
    stats = answer.json()
    return {k: int(stats[k]) for k in ("page_cache_hits", "page_cache_misses", "page_cache_bytes")}

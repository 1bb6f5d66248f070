"""What the acceptance suite needs from a source connector: one Harness per connector, in
HARNESSES. A new connector adds its harness (tests/acceptance/<connector>.py) and passes
every check in test_sources.py unchanged (modelled on Airbyte's connector acceptance tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

# Faults every sandbox can inject mid-read, after `after` data requests went through:
# "expire_token" (the next call answers as the vendor does for an expired token),
# "429" (rate limited, with Retry-After), "503" (a transient server error).
FAULTS = ("expire_token", "429", "503")


@dataclass(frozen=True)
class Harness:
    connector: str
    sandbox: Callable[[], AbstractContextManager[Any]]  # a started sandbox server
    connection: Callable[[Any, bool], dg.ConfigurableResource]  # (sandbox, valid credentials?)
    object: str  # an object with enough records for several pages
    cursor_field: str  # the incremental cursor (a Datetime field, or a Date one)
    key: str | tuple[str, ...]  # the records' unique key (an aggregate report's: its dimensions)
    truth: Callable[[Any], pl.DataFrame]  # what a full read of `object` returns, typed
    inject: Callable[[Any, str, int], None]  # (sandbox, fault, after) -> one fault, once
    page_size: int = 50
    fields: tuple[str, ...] | None = None  # the fields read; None: every field `object` describes
    name: str | None = None  # the test id, where one connector has several harnesses
    # injected faults not yet served (every SandboxServer counts them the same way)
    faults_pending: Callable[[Any], int] = lambda sandbox: len(sandbox.pending_faults())


def key_columns(harness: Harness) -> list[str]:
    return [harness.key] if isinstance(harness.key, str) else list(harness.key)


def open_client(harness: Harness, sandbox: Any, valid: bool = True) -> Any:
    with dg.build_resources({"source": harness.connection(sandbox, valid)}) as resources:
        return resources.source.open()


def pages(client: Any, request: Any) -> Iterator[pl.DataFrame]:
    yield from client.read(request)

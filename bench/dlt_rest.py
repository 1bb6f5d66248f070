"""dlt's REST API source on the sandbox: dicts per record, the transform as processing steps."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dlt.sources.rest_api import rest_api_source

from bench import dlt_common
from bench.common import (
    CHECKED,
    EXCLUDED_STAGE,
    MASKED,
    PAGE_HEADERS,
    QUERY_PATH,
    SOQL,
    Result,
    Sandbox,
)


class Counter:
    """Records the source yielded, before any step dropped one."""

    def __init__(self) -> None:
        self.read = 0

    def mask(self, record: dict[str, Any]) -> dict[str, Any]:
        self.read += 1
        record.pop("attributes", None)  # Salesforce's per-record type/url, not a field
        email = record.get(MASKED)
        if email is not None:
            record[MASKED] = hashlib.sha256(email.encode()).hexdigest()
        return record


def keep(record: dict[str, Any]) -> bool:
    """The filter, and the validate task: negative amounts are dropped (dlt has no quarantine)."""
    amount = record.get(CHECKED)
    return record.get("StageName") != EXCLUDED_STAGE and (amount is None or amount >= 0)


def source(sandbox: Sandbox, counter: Counter) -> Any:
    token, instance_url = sandbox.token()
    return rest_api_source(
        {
            "client": {
                "base_url": instance_url,
                "auth": {"type": "bearer", "token": token},
                "headers": PAGE_HEADERS,
                # nextRecordsUrl is relative to the host; dlt urljoins it with the request URL.
                "paginator": {"type": "json_link", "next_url_path": "nextRecordsUrl"},
            },
            "resources": [
                {
                    "name": dlt_common.TABLE,
                    "endpoint": {
                        "path": QUERY_PATH.lstrip("/"),
                        "params": {"q": SOQL},
                        "data_selector": "records",
                    },
                    "write_disposition": "append",
                    "columns": dlt_common.COLUMN_HINTS,
                    "processing_steps": [{"map": counter.mask}, {"filter": keep}],
                }
            ],
        },
        name="salesforce",
    )


def run(workdir: Path) -> Result:
    counter = Counter()
    return dlt_common.timed_result(
        "dlt-rest-api", workdir, lambda: source(Sandbox.from_env(), counter), lambda: counter.read
    )

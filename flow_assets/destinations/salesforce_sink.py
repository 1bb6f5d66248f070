"""The Salesforce destination: records inserted, upserted by external id, updated or deleted by
Id through sObject Collections, 200 a call (large runs go through Bulk API 2.0 instead: see
salesforce_bulk); each record Salesforce refuses goes to the flow's error location with the
statusCode and message Salesforce gave it."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from pydantic import Field

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.http import parse_json
from flow_assets.connectors.salesforce import SalesforceClient, SalesforceConnection
from flow_assets.destinations.saas_sink import RecordResult, SaasSinkIOManager, SinkWriter
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import SalesforceSinkSettings

BATCH = 200  # sObject Collections' limit per call
# Whether the record's fields must be createable (insert), updateable, or both (upsert).
NEEDS = {"insert": ("createable",), "update": ("updateable",),
         "upsert": ("createable", "updateable"), "delete": ()}  # fmt: skip


def reason(result: dict[str, Any]) -> str:
    """Salesforce's own words for a refused record: statusCode, message and the fields named.
    The record's values are never added (a masked field's value must not reach the errors)."""
    errors = result.get("errors") or [{"statusCode": "UNKNOWN", "message": "no error given"}]
    return "; ".join(
        f"{e.get('statusCode')}: {e.get('message', '').strip()}"
        + (f" (fields: {', '.join(e['fields'])})" if e.get("fields") else "")
        for e in errors
    )


class SalesforceWriter:
    """One flow's writes to one object of an open Salesforce client, through sObject
    Collections."""

    batch_size = BATCH

    def __init__(self, client: SalesforceClient, settings: SalesforceSinkSettings, write: str,
                 key: list[str]):  # fmt: skip
        self.client, self.settings, self.write_kind = client, settings, write
        self.external = settings.external_id_field or (key[0] if write == "upsert" else None)
        base = f"{client.data_path}/composite/sobjects"
        self.path = f"{base}/{settings.object}/{self.external}" if write == "upsert" else base
        self.method = {"insert": "POST", "upsert": "PATCH", "update": "PATCH"}.get(write, "DELETE")
        self.target = f"salesforce://{settings.connection}/{settings.object} ({write})"

    def columns(self, schema: pl.Schema) -> list[str]:
        """The fields sent: the records' own (Flowbridge's _fb_ columns stay behind); Id only
        where Salesforce takes it."""
        names = [n for n in schema if not n.startswith("_fb_")]
        if self.write_kind == "delete":
            return self._require(names, ["Id"])
        if self.write_kind == "update":
            self._require(names, ["Id"])
        if self.write_kind == "upsert":
            self._require(names, [str(self.external)])
        names = [n for n in names if n != "Id" or self.write_kind == "update"]
        describe = self.client._get(f"{self.client.data_path}/sobjects/{self.settings.object}/"
                                    "describe/")  # fmt: skip
        fields = {f["name"]: f for f in describe.get("fields", [])}
        for name in names:
            if name not in fields:
                raise ConnectorError(
                    f"{self.settings.object} has no field '{name}'"
                    f"{did_you_mean(name, list(fields))}: rename or drop it with a map task"
                )
            if name != "Id" and not all(fields[name].get(n) for n in NEEDS[self.write_kind]):
                raise ConnectorError(
                    f"{self.settings.object}.{name} is read-only for write {self.write_kind}: "
                    "drop it with a map task (map_all: {exclude: [...]})"
                )
        if self.external is not None and not fields[self.external].get("externalId"):
            raise ConnectorError(
                f"{self.settings.object}.{self.external} is not an external id field; upsert "
                "matches on one (or write update by Id)"
            )
        return names

    def _require(self, names: list[str], needed: list[str]) -> list[str]:
        missing = [n for n in needed if n not in names]
        if missing:
            raise ConnectorError(
                f"write {self.write_kind} to {self.settings.object} needs the field "
                f"{', '.join(missing)} in every record; map it from the source"
            )
        return needed

    def write(self, batch: pl.DataFrame) -> list[RecordResult]:
        """One call of at most 200 records; results come back in the records' order."""
        if self.write_kind == "delete":
            ids = ",".join(batch["Id"].to_list())
            results = self._call(params={"ids": ids, "allOrNone": "false"})
        else:
            records = json.loads(batch.write_json())  # Polars writes dates ISO, nulls as null
            kind = {"type": self.settings.object}
            payload = {"allOrNone": False, "records": [{"attributes": kind, **r} for r in records]}
            results = self._call(json=payload)
        if not isinstance(results, list):
            raise ConnectorError(f"{self.method} {self.path}: expected a list of results, got "
                                 f"{type(results).__name__}")  # fmt: skip
        inserted = self.write_kind == "insert"  # a create's result has no "created" flag
        return [
            RecordResult(True, inserted or bool(r.get("created"))) if r.get("success")
            else RecordResult(False, error=reason(r))
            for r in results
        ]  # fmt: skip

    def _call(self, **kwargs: Any) -> Any:
        url = self.client._base() + self.path
        # An insert repeated after a lost answer would create the records twice.
        idempotent = self.write_kind != "insert"
        return self.client.http.request(self.method, url, parse=parse_json,
                                        idempotent=idempotent, **kwargs)  # fmt: skip


class SalesforceIOManager(SaasSinkIOManager):
    """Writes a flow's records to Salesforce, through sObject Collections or, for large runs,
    Bulk API 2.0 (the flow's api setting); refused records go to the error location."""

    connection: SalesforceConnection
    bulk_batch_size: int | None = Field(
        None, ge=1, description="Records per Bulk API 2.0 ingest job (default 50,000)."
    )
    bulk_timeout_seconds: float | None = Field(
        None, gt=0, description="How long a Bulk API 2.0 job may run before it is aborted, "
        "what it did not process refused (default 3600).",
    )  # fmt: skip

    def writer(self, settings_json: str, write: str, key: list[str], rows: int) -> SinkWriter:
        settings = SalesforceSinkSettings.model_validate_json(settings_json)
        client = self.connection.open()
        if settings.api == "bulk" or (settings.api == "automatic"
                                      and rows >= settings.bulk_threshold):  # fmt: skip
            # Imported here: salesforce_bulk builds on this module's SalesforceWriter.
            from flow_assets.destinations.salesforce_bulk import SalesforceBulkWriter

            return SalesforceBulkWriter(client, settings, write, key, self.bulk_batch_size,
                                        self.bulk_timeout_seconds)  # fmt: skip
        return SalesforceWriter(client, settings, write, key)

"""The Salesforce destination: records inserted, upserted by external id, updated or deleted by
Id through sObject Collections, 200 a call; each record Salesforce refuses goes to the flow's
error location with the statusCode and message Salesforce gave it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.http import parse_json
from flow_assets.connectors.salesforce import SalesforceClient, SalesforceConnection
from flow_assets.destinations.records import reject
from flow_assets.destinations.staging import Staged, read_batches
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import SalesforceSinkSettings

BATCH = 200  # sObject Collections' limit per call
# Whether the record's fields must be createable (insert), updateable, or both (upsert).
NEEDS = {"insert": ("createable",), "update": ("updateable",),
         "upsert": ("createable", "updateable"), "delete": ()}  # fmt: skip


@dataclass
class Tally:
    written: int = 0
    created: int = 0
    calls: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


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
    """One flow's writes to one object of an open Salesforce client."""

    def __init__(self, client: SalesforceClient, settings: SalesforceSinkSettings, write: str,
                 key: list[str]):  # fmt: skip
        self.client, self.settings, self.write = client, settings, write
        self.external = settings.external_id_field or (key[0] if write == "upsert" else None)
        base = f"{client.data_path}/composite/sobjects"
        self.path = f"{base}/{settings.object}/{self.external}" if write == "upsert" else base
        self.method = {"insert": "POST", "upsert": "PATCH", "update": "PATCH"}.get(write, "DELETE")

    def columns(self, schema: pl.Schema) -> list[str]:
        """The fields sent: the records' own (Flowbridge's _fb_ columns stay behind); Id only
        where Salesforce takes it. Unknown or read-only fields fail the run before any write,
        rather than refusing every record one by one."""
        names = [n for n in schema if not n.startswith("_fb_")]
        if self.write == "delete":
            return self._require(names, ["Id"])
        if self.write == "update":
            self._require(names, ["Id"])
        if self.write == "upsert":
            self._require(names, [str(self.external)])
        names = [n for n in names if n != "Id" or self.write == "update"]
        describe = self.client._get(f"{self.client.data_path}/sobjects/{self.settings.object}/"
                                    "describe/")  # fmt: skip
        fields = {f["name"]: f for f in describe.get("fields", [])}
        for name in names:
            if name not in fields:
                raise ConnectorError(
                    f"{self.settings.object} has no field '{name}'"
                    f"{did_you_mean(name, list(fields))}: rename or drop it with a map task"
                )
            if name != "Id" and not all(fields[name].get(need) for need in NEEDS[self.write]):
                raise ConnectorError(
                    f"{self.settings.object}.{name} is read-only for write {self.write}: drop it "
                    "with a map task (map_all: {exclude: [...]})"
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
                f"write {self.write} to {self.settings.object} needs the field "
                f"{', '.join(missing)} in every record; map it from the source"
            )
        return needed

    def send(self, part: pl.DataFrame, tally: Tally) -> None:
        """One call of at most 200 records; results come back in the records' order."""
        if self.write == "delete":
            ids = ",".join(part["Id"].to_list())
            results = self._call(params={"ids": ids, "allOrNone": "false"})
        else:
            records = json.loads(part.write_json())  # Polars writes dates ISO, nulls as null
            kind = {"type": self.settings.object}
            payload = {"allOrNone": False, "records": [{"attributes": kind, **r} for r in records]}
            results = self._call(json=payload)
        if not isinstance(results, list) or len(results) != part.height:
            raise ConnectorError(
                f"{self.method} {self.path}: expected {part.height} results, got "
                f"{len(results) if isinstance(results, list) else type(results).__name__}"
            )
        failed = [i for i, r in enumerate(results) if not r.get("success")]
        tally.calls += 1
        tally.written += part.height - len(failed)
        tally.created += sum(1 for r in results if r.get("success") and r.get("created"))
        if failed:
            tally.refused += part[failed].to_dicts()
            tally.reasons += [reason(results[i]) for i in failed]

    def _call(self, **kwargs: Any) -> Any:
        url = self.client._base() + self.path
        return self.client.http.request(self.method, url, parse=parse_json, **kwargs)


class SalesforceIOManager(dg.ConfigurableIOManager):
    """Writes a flow's records to Salesforce; refused records go to the error location."""

    connection: SalesforceConnection
    error_root: str = Field(
        description="Where refused records go: the lake folder, or s3://bucket/prefix (AWS)."
    )
    error_kms_key_id: str | None = Field(None, description="SSE-KMS key of an s3:// error root.")
    error_region_name: str | None = Field(None, description="Region of an s3:// error root.")

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        raise NotImplementedError("the Salesforce destination writes only")

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        settings = SalesforceSinkSettings.model_validate_json(str(meta["flowbridge/settings"]))
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        write = str(meta.get("flowbridge/write"))
        writer = SalesforceWriter(self.connection.open(), settings, write, key)
        tally, columns = Tally(), None
        for frame in read_batches(obj.path):
            columns = columns or writer.columns(frame.schema)
            for offset in range(0, frame.height, BATCH):
                writer.send(frame.select(columns).slice(offset, BATCH), tally)
        table = str(meta.get("flowbridge/table") or context.asset_key.path[0])
        aws = AwsConnection(region_name=self.error_region_name) if self.error_region_name else None
        reject(self.error_root, table, tally.refused, tally.reasons, context.run_id, aws,
               self.error_kms_key_id)  # fmt: skip
        context.add_output_metadata(
            {
                "rows_written": tally.written,
                "rows_refused_by_destination": len(tally.refused),
                "rows_created": tally.created,
                "api_calls": tally.calls,
                "destination": f"salesforce://{settings.connection}/{settings.object} ({write})",
            }
        )

"""The Salesforce destination through Bulk API 2.0 ingest jobs, for runs too large for sObject
Collections' 200 records a call; records Salesforce refuses go to the error location as there.

When: the flow's salesforce block says api: bulk, or api: automatic (the default) and the run
stages bulk_threshold records or more (1,000). That is AppFlow's rule for its Salesforce
destination (dataTransferApi AUTOMATIC; REST_SYNC and BULKV2 force one API): "If your flow
transfers fewer than 1,000 records, Amazon AppFlow uses Salesforce REST API. If your flow
transfers 1,000 records or more, Amazon AppFlow uses Salesforce Bulk API 2.0."
(https://docs.aws.amazon.com/appflow/1.0/APIReference/API_SalesforceDestinationProperties.html)

How, after Salesforce's Bulk API 2.0 developer guide ("Bulk API 2.0 Ingest",
https://developer.salesforce.com/docs/platform/api-asynch/guide/bulk-api-2-0-ingest.html, and
its pages Upload Job Data, Upload Complete, Get Job Failed Record Results, Understanding Bulk
API 2.0 Ingest): each write() is one ingest job: POST /jobs/ingest {object, operation,
externalIdFieldName, contentType CSV, lineEnding LF, columnDelimiter COMMA}; one PUT of the CSV
to /jobs/ingest/{id}/batches; PATCH {"state": "UploadComplete"}; GET /jobs/ingest/{id} until
JobComplete, Failed or Aborted, 0.1 s apart doubling to 30 s, for at most `timeout` seconds
(then the job is aborted); then its successfulResults (sf__Id, sf__Created, the record's
fields), failedResults (sf__Id, sf__Error, the fields) and unprocessedrecords (the fields).

Decisions:
- Size: 50,000 records a job. Salesforce cuts a job into batches of 10,000 itself, and takes up
  to 100 MB of CSV an upload (150 MB once base64-encoded); a batch whose CSV is larger than that
  is halved, each half a job of its own, so no upload is ever refused for its size.
- CSV, written by Polars: null (and an empty string, which REST stores as null) is #N/A, which
  sets the field to null as JSON null does (an empty field would leave it as it was); dates
  YYYY-MM-DD, datetimes in UTC as 2025-01-31T12:00:00.000Z, booleans true/false, numbers in
  plain decimals.
- Matching results to records: result files come in no promised order, and Salesforce refuses a
  column the object lacks, so no row number can travel with a record. Each result carries the
  record's fields as uploaded; results are matched to records on all those fields, read back by
  the same CSV reader as the upload (so quoting cannot differ), identical records taken in turn
  (they are indistinguishable, so which gets which result does not matter). A result matching no
  record, or a record without a result, stops the run naming the job rather than guess.
- What is repeated: a job does nothing until UploadComplete, so a create is repeated freely (a
  lost answer leaves an empty Open job behind, which is never processed). An upload is sent
  once: a second PUT to a job is refused ("Found multiple contents for job"), and a failed
  upload may have landed; so when one fails other than by a 429 (never applied, retried in
  place) that job is aborted and the records go to a new one (3 jobs at most). UploadComplete is
  repeated; a repeat refused because the first landed is told apart by the job's state.
- A job that fails as a whole (Failed: e.g. the org's 24-hour record allocation ran out; Aborted:
  our deadline passed) has processed some records, maybe none. Those it processed count by their
  results; each it did not is refused, "NOT_PROCESSED: ... job <id> ended Failed: <Salesforce's
  errorMessage>", into the error location like any refused record. No record is lost, and the
  run goes on: a failed run's retry would write the batches already written again (an insert
  would duplicate them).
- Errors carry Salesforce's codes and messages, never the record's values: a value of the record
  that Salesforce quotes in a message is replaced by ***.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from flow_assets.connectors.errors import ConnectorError, MalformedResponse
from flow_assets.connectors.http import TransientError, parse_json
from flow_assets.connectors.salesforce import SalesforceClient
from flow_assets.destinations.saas_sink import RecordResult
from flow_assets.destinations.salesforce_sink import SalesforceWriter, reason
from flow_assets.spec.models import SalesforceSinkSettings

log = logging.getLogger(__name__)

BATCH = 50_000  # records a job
MAX_UPLOAD_BYTES = 100_000_000  # the guide's 100 MB of CSV an upload
TIMEOUT_SECONDS = 3600.0  # a job still running after this is aborted
POLL_FIRST, POLL_MAX = 0.1, 30.0  # seconds between polls: the first, the most
JOB_ATTEMPTS = 3  # jobs tried for one batch when uploads fail
TERMINAL = ("JobComplete", "Failed", "Aborted")
_ROW, _NTH = "_fb_row", "_fb_nth"  # a record's place in the batch; among identical records
_ERROR = re.compile(r"(?P<code>[A-Z][A-Z0-9_]*):(?P<rest>.*)", re.DOTALL)


class SalesforceBulkWriter(SalesforceWriter):
    """One flow's writes to one object of an open Salesforce client, through Bulk API 2.0
    ingest jobs; the fields sent are checked as for sObject Collections."""

    def __init__(
        self, client: SalesforceClient, settings: SalesforceSinkSettings, write: str,
        key: list[str], batch_size: int | None = None, timeout: float | None = None,
    ):  # fmt: skip
        super().__init__(client, settings, write, key)
        self.batch_size = batch_size or BATCH
        self.timeout = timeout or TIMEOUT_SECONDS
        self.jobs = f"{client.data_path}/jobs/ingest"
        self.target = (
            f"salesforce://{settings.connection}/{settings.object} ({write}, Bulk API 2.0)"
        )

    def columns(self, schema: pl.Schema) -> list[str]:
        names = super().columns(schema)
        nested = [n for n in names if schema[n].is_nested()]
        if nested:
            raise ConnectorError(
                f"{self.settings.object}.{nested[0]} is a {schema[nested[0]]} column: a CSV field "
                "holds one value; join it into text (a multipicklist is 'a;b') with a map task"
            )
        return names

    def write(self, batch: pl.DataFrame) -> list[RecordResult]:
        """One job of the batch's records (two or more if its CSV is over 100 MB); one result
        per record, in the batch's order."""
        data = _csv(batch)
        if len(data) > MAX_UPLOAD_BYTES and batch.height > 1:
            half = batch.height // 2
            return self.write(batch.head(half)) + self.write(batch.slice(half))
        job = self._open(data)
        self._close(job)
        info, why = self._wait(job)
        return self._results(info, why, batch, data)

    # --- the job ---------------------------------------------------------------------

    def _open(self, data: bytes) -> str:
        """A new job holding `data`: its id."""
        body = {"object": self.settings.object, "operation": self.write_kind,
                "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"}  # fmt: skip
        if self.write_kind == "upsert":
            body["externalIdFieldName"] = str(self.external)
        for attempt in range(1, JOB_ATTEMPTS + 1):
            created = self._request("POST", self.jobs, json=body)
            if not isinstance(created, dict) or not created.get("id"):
                raise ConnectorError(f"POST {self.jobs}: the answer names no job id")
            job = str(created["id"])
            try:
                self._request("PUT", f"{self.jobs}/{job}/batches", parse=bytes, data=data,
                              headers={"Content-Type": "text/csv"}, idempotent=False)  # fmt: skip
                return job
            except ConnectorError as exc:
                self._abort_quietly(job)  # never UploadComplete, so none of it is processed
                if attempt == JOB_ATTEMPTS or not _maybe_transient(exc):
                    raise
                log.warning("%s: the upload to job %s failed (%s); it was aborted and the "
                            "records go to a new job", self.target, job, exc)  # fmt: skip
        raise AssertionError("unreachable")

    def _close(self, job: str) -> None:
        try:
            self._request("PATCH", f"{self.jobs}/{job}", json={"state": "UploadComplete"})
        except ConnectorError:
            if self._info(job).get("state") == "Open":  # else an earlier attempt landed
                self._abort_quietly(job)
                raise

    def _wait(self, job: str) -> tuple[dict[str, Any], str]:
        """The job's last info once it has ended, and why, if it did not complete."""
        deadline, delay = time.monotonic() + self.timeout, POLL_FIRST
        while True:
            info = self._info(job)
            if info.get("state") in TERMINAL:
                return info, str(info.get("errorMessage") or "")
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
        log.warning("%s: job %s is still %s after %g s; aborting it", self.target, job,
                    info.get("state"), self.timeout)  # fmt: skip
        self._abort_quietly(job)
        info = self._info(job)
        if info.get("state") not in TERMINAL:
            raise ConnectorError(f"{self.target}: job {job} is still {info.get('state')} after "
                                 "it was aborted; see Setup > Bulk Data Load Jobs")  # fmt: skip
        return info, str(info.get("errorMessage") or f"aborted after {self.timeout:g} s")

    def _abort_quietly(self, job: str) -> None:
        try:
            self._request("PATCH", f"{self.jobs}/{job}", json={"state": "Aborted"})
        except ConnectorError as exc:  # it may have ended meanwhile: its state tells
            log.warning("%s: job %s could not be aborted: %s", self.target, job, exc)

    def _info(self, job: str) -> dict[str, Any]:
        info = self._request("GET", f"{self.jobs}/{job}")
        if not isinstance(info, dict) or "state" not in info:
            raise MalformedResponse(f"GET {self.jobs}/{job}: the answer is not a job's info")
        return info

    def _request(self, method: str, path: str, parse: Callable[[bytes], Any] = parse_json,
                 idempotent: bool = True, **kwargs: Any) -> Any:  # fmt: skip
        url = self.client._base() + path
        return self.client.http.request(method, url, parse=parse, idempotent=idempotent,
                                        **kwargs)  # fmt: skip

    # --- the results -----------------------------------------------------------------

    def _results(
        self, info: dict[str, Any], why: str, batch: pl.DataFrame, data: bytes
    ) -> list[RecordResult]:
        job, state = str(info["id"]), str(info["state"])
        processed = int(info.get("numberRecordsProcessed") or 0)
        failed = int(info.get("numberRecordsFailed") or 0)
        names = batch.columns
        parts = []
        if processed > failed:
            frame = self._file(job, "successfulResults", ["sf__Id", "sf__Created"], names,
                               processed - failed)  # fmt: skip
            created = pl.col("sf__Created").str.to_lowercase() == "true"
            parts.append(_outcome(frame, names, True, created, pl.lit(None, pl.String)))
        if failed:
            frame = self._file(job, "failedResults", ["sf__Id", "sf__Error"], names, failed)
            private = [n for n in names if n != "Id"]  # Ids are not values to hide
            errors = [bulk_reason(row[0], list(row[1:]))
                      for row in frame.select("sf__Error", *private).iter_rows()]  # fmt: skip
            parts.append(_outcome(frame, names, False, pl.lit(False), pl.Series(errors)))
        if state != "JobComplete":
            unprocessed = batch.height - processed
            frame = self._file(job, "unprocessedrecords", [], names, unprocessed)
            refusal = (f"NOT_PROCESSED: Bulk API 2.0 job {job} ended {state} before processing "
                       f"this record{': ' + why[:300] if why else ''}")  # fmt: skip
            parts.append(_outcome(frame, names, False, pl.lit(False), pl.lit(refusal)))
            log.warning("%s: job %s ended %s (%s): %d of %d records not processed", self.target,
                        job, state, why, unprocessed, batch.height)  # fmt: skip
        sent = _numbered(pl.read_csv(io.BytesIO(data), infer_schema=False), names)
        got = _numbered(pl.concat(parts, how="vertical") if parts else None, names)
        on = [*names, _NTH]
        joined = sent.with_row_index(_ROW).join(got, on=on, how="left").sort(_ROW)
        strays = got.join(sent, on=on, how="anti").height
        missing = joined["_ok"].null_count()
        if strays or missing:
            raise ConnectorError(
                f"{self.target}: job {job}: {missing} of {batch.height} records have no result "
                f"and {strays} results match no record sent; the run stops rather than guess "
                "which were written (Setup > Bulk Data Load Jobs shows the job)"
            )
        outcomes = joined.select("_ok", "_created", "_error").iter_rows()
        return [RecordResult(ok, created, error) for ok, created, error in outcomes]

    def _file(self, job: str, which: str, extra: list[str], names: list[str], rows: int
              ) -> pl.DataFrame:  # fmt: skip
        """A results file of the job as text columns; one that is cut short or lacks columns
        is read again (HttpClient retries a MalformedResponse)."""
        wanted = [*extra, *names]

        def parse(body: bytes) -> pl.DataFrame:
            try:
                frame = (pl.read_csv(io.BytesIO(body), infer_schema=False) if body.strip()
                         else pl.DataFrame(schema=dict.fromkeys(wanted, pl.String)))  # fmt: skip
            except pl.exceptions.PolarsError as exc:
                kind = type(exc).__name__
                raise MalformedResponse(f"{which} of job {job} is not CSV ({kind})") from None
            lacking = [c for c in wanted if c not in frame.columns]
            if lacking or frame.height != rows:
                raise MalformedResponse(
                    f"{which} of job {job} has {frame.height} records, the job counts {rows}"
                    + (f"; it lacks the columns {', '.join(lacking)}" if lacking else "")
                )
            return frame.select(wanted)

        return self._request("GET", f"{self.jobs}/{job}/{which}/", parse=parse)


def bulk_reason(error: str, values: list[str | None]) -> str:
    """sf__Error ("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --", one
    such part per error) in the words sObject Collections' refusals get (see reason), with any
    of the record's `values` that Salesforce quotes replaced by ***."""
    errors = []
    for part in re.split(r"(?<=--)\s+(?=[A-Z][A-Z0-9_]*:)", error.strip()):
        match = _ERROR.fullmatch(part.strip())
        if match is None:
            errors.append({"statusCode": "UNKNOWN", "message": without_values(part, values)})
            continue
        message, fields = match["rest"].strip(), ""
        if message.endswith("--"):  # the documented shape: message:fields --
            message, _, fields = message[:-2].rstrip().rpartition(":")
        errors.append({"statusCode": match["code"], "message": without_values(message, values),
                       "fields": [f.strip() for f in fields.split(",") if f.strip()]})  # fmt: skip
    return reason({"errors": errors})


def without_values(message: str, values: list[str | None]) -> str:
    """`message` with each of `values` that stands quoted or after ': ' replaced by ***."""
    for value in sorted({v for v in values if v and len(v) > 1 and v != "#N/A"}, key=len,
                        reverse=True):  # fmt: skip
        message = re.sub(rf"(?:(?<=')|(?<=\")|(?<=: )){re.escape(value)}(?=['\":,\];)]|\s|$)",
                         "***", message)  # fmt: skip
    return message


def _csv(batch: pl.DataFrame) -> bytes:
    """The batch as Bulk API 2.0 CSV (see the module's notes)."""
    columns = []
    for name, dtype in batch.schema.items():
        column = pl.col(name)
        if dtype == pl.String:
            column = pl.when(column != "").then(column)
        elif dtype == pl.Date:
            column = column.dt.to_string("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            column = column.dt.convert_time_zone("UTC") if dtype.time_zone else column
            column = column.dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ")
        elif dtype == pl.Time:
            column = column.dt.to_string("%H:%M:%S%.3fZ")
        columns.append(column.alias(name))
    out = io.BytesIO()
    batch.select(columns).write_csv(out, null_value="#N/A", float_scientific=False,
                                    line_terminator="\n")  # fmt: skip
    return out.getvalue()


def _outcome(frame: pl.DataFrame, names: list[str], ok: bool, created: pl.Expr,
             error: pl.Expr | pl.Series) -> pl.DataFrame:  # fmt: skip
    """A results file's records with what became of them."""
    return frame.select(*names, _ok=pl.lit(ok), _created=created, _error=error)


def _numbered(frame: pl.DataFrame | None, names: list[str]) -> pl.DataFrame:
    """Text columns with nulls as "" (readers differ on empty fields), and each record's
    number among the identical records before it."""
    if frame is None:
        frame = pl.DataFrame(schema={**dict.fromkeys(names, pl.String), "_ok": pl.Boolean,
                                     "_created": pl.Boolean, "_error": pl.String})  # fmt: skip
    return frame.with_columns(pl.col(names).fill_null("")).with_columns(
        pl.int_range(pl.len()).over(names).alias(_NTH)
    )


def _maybe_transient(exc: ConnectorError) -> bool:
    """Whether another job may fare better: an answer lost or a 5xx, not a refusal."""
    return isinstance(exc, TransientError) or isinstance(exc.__cause__, TransientError)

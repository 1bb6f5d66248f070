"""The sandbox's Bulk API 2.0 ingest jobs: create a job (POST /jobs/ingest), upload its CSV once
(PUT .../batches) while it is Open, close it (PATCH state UploadComplete) or abort it, poll it
(GET: InProgress, then JobComplete or Failed) and read its successfulResults, failedResults and
unprocessedrecords as CSV, as Salesforce documents in the Bulk API 2.0 developer guide.

Records are applied through salesforce_writes.apply, the same checks and answers as the sObject
Collections writes, so both paths refuse the same records with the same codes. CSV follows the
guide's conventions: an empty field leaves the field as it is, #N/A sets it to null, dates are
YYYY-MM-DD, datetimes ISO 8601 (Z or an offset), booleans true/false. A job is processed when it
is polled: the first poll after UploadComplete sees InProgress (`processing_polls` of them), the
next one the outcome. Result files list records in an order of their own (Salesforce promises
none), so clients must match results to records. Error bodies and messages are modelled on
Salesforce's (errorCode INVALIDJOB, INVALIDJOBSTATE, ...)."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flow_assets.sandbox import salesforce_data as data
from flow_assets.sandbox import salesforce_writes as writes
from flow_assets.sandbox.server import Reply, json_body

if TYPE_CHECKING:
    from flow_assets.sandbox.salesforce import SalesforceSandbox

_VERSION = r"v\d+\.\d+|latest"
_JOBS = rf"/services/data/(?P<v>{_VERSION})/jobs/ingest"
_RESULTS = "successfulResults|failedResults|unprocessedrecords|unprocessedRecords"
ROUTES = (
    (rf"{_JOBS}/?", "bulk_jobs"),
    (rf"{_JOBS}/(?P<job>[^/]+)/?", "bulk_job"),
    (rf"{_JOBS}/(?P<job>[^/]+)/batches/?", "bulk_upload"),
    (rf"{_JOBS}/(?P<job>[^/]+)/(?P<results>{_RESULTS})/?", "bulk_results"),
)
KINDS = tuple(kind for _, kind in ROUTES)

OPERATIONS = {"insert": "POST", "update": "PATCH", "upsert": "PATCH", "delete": "DELETE"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
              "BACKQUOTE": "`"}  # fmt: skip
TERMINAL = ("JobComplete", "Failed", "Aborted")
CHUNK = 10_000  # Salesforce processes a job's records in batches of 10,000
DAILY_RECORDS = 150_000_000  # records a rolling 24 hours may process
MAX_UPLOAD_BYTES = 150 * 1024 * 1024 * 3 // 4  # 150 MB once base64-encoded
_CREATE_KEYS = {"object", "operation", "externalIdFieldName", "contentType", "lineEnding",
                "columnDelimiter", "assignmentRuleId"}  # fmt: skip
_CSV = "text/csv"
_NUMBERS = {"int": int, "double": float, "currency": float, "percent": float}
_MULTIPLE = ("Found multiple contents for job: {id}, please 'Close' / 'Abort' / 'Delete' the "
             "current Job then create a new Job and make sure you only do 'PUT' once on a given "
             "Job.")  # fmt: skip


@dataclass
class Job:
    """One ingest job: its settings, the CSV uploaded, and each processed record's outcome."""

    id: str
    object: str
    operation: str
    external: str | None
    line_ending: str
    delimiter: str
    version: str
    created: str
    state: str = "Open"
    modstamp: str = ""
    upload: str | None = None  # the CSV as uploaded
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    # row number -> (sf__Id, sf__Created) or (sf__Id, sf__Error)
    succeeded: dict[int, tuple[str, bool]] = field(default_factory=dict)
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)
    error_message: str | None = None
    polls: int = 0  # polls seen while InProgress

    def info(self) -> dict[str, Any]:
        """The job as Get Job Info answers it."""
        answer: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": self.object,
            "createdById": data.USER_ID, "createdDate": self.created,
            "systemModstamp": self.modstamp or self.created, "state": self.state,
        }  # fmt: skip
        if self.external is not None:
            answer["externalIdFieldName"] = self.external
        answer |= {
            "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": float(self.version), "jobType": "V2Ingest",
            "contentUrl": f"services/data/v{self.version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending, "columnDelimiter": self.delimiter,
            "numberRecordsProcessed": len(self.succeeded) + len(self.failed),
            "numberRecordsFailed": len(self.failed), "retries": 0,
            "totalProcessingTime": 0, "apiActiveProcessingTime": 0, "apexProcessingTime": 0,
        }  # fmt: skip
        if self.error_message is not None:
            answer["errorMessage"] = self.error_message
        return answer


class IngestJobs:
    """The sandbox's ingest jobs. Tests may set `processing_polls` (polls that see a job
    InProgress, at least one: a slow org) and `daily_records` (records the rolling 24 hours
    still allow: a job that runs out fails, the rest of its records unprocessed, as Salesforce
    documents)."""

    def __init__(self, sandbox: SalesforceSandbox):
        self.sandbox = sandbox
        self.processing_polls = 1
        self.daily_records = DAILY_RECORDS
        self.jobs: dict[str, Job] = {}
        self._count = 0
        self._lock = threading.RLock()  # held while a job is processed: one at a time

    def job(self, job_id: str) -> Job:
        return self.jobs[job_id]

    def respond(
        self, kind: str, match: re.Match[str], method: str, headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:  # fmt: skip
        from flow_assets.sandbox.salesforce import _errors, _not_found

        allowed = {"bulk_jobs": ("GET", "POST"), "bulk_job": ("GET", "PATCH", "DELETE"),
                   "bulk_upload": ("PUT",), "bulk_results": ("GET",)}[kind]  # fmt: skip
        if method not in allowed:
            return _errors(405, "METHODNOTALLOWED", f"HTTP Method '{method}' not allowed. "
                           f"Allowed are {','.join(allowed)}")  # fmt: skip
        version = match["v"][1:] if match["v"] != "latest" else self.sandbox.api_version
        with self._lock:
            if kind == "bulk_jobs":
                if method == "GET":
                    infos = [j.info() for j in self.jobs.values()]
                    return Reply(200, json_body({"done": True, "records": infos,
                                                 "nextRecordsUrl": None}))  # fmt: skip
                return self._create(body, version)
            job = self.jobs.get(match["job"])
            if job is None:
                return _not_found()
            if kind == "bulk_upload":
                return self._upload(job, headers, body)
            if kind == "bulk_results":
                return self._results(job, match["results"].lower())
            if method == "PATCH":
                return self._change_state(job, body)
            if method == "DELETE":
                if job.state in ("Open", "InProgress"):
                    why = f"InvalidJobState : a job {job.state} cannot be deleted"
                    return _errors(400, "INVALIDJOBSTATE", why)
                del self.jobs[job.id]
                return Reply(204)
            self._advance(job)
            return Reply(200, json_body(job.info()))

    # --- the calls ---------------------------------------------------------------------

    def _create(self, body: bytes, version: str) -> Reply:
        from flow_assets.sandbox.salesforce import _errors

        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return _errors(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(doc, dict):
            return _errors(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        unknown = sorted(set(doc) - _CREATE_KEYS)
        if unknown:
            return _errors(400, "JSON_PARSER_ERROR", f'Unrecognized field "{unknown[0]}"')
        enums = {"contentType": ("CSV",), "lineEnding": tuple(LINE_ENDINGS),
                 "columnDelimiter": tuple(DELIMITERS)}  # fmt: skip
        for key, values in enums.items():
            if key in doc and doc[key] not in values:
                return _errors(400, "JSON_PARSER_ERROR", f"Cannot deserialize {key} from "
                               f"{json.dumps(doc[key])}: one of {', '.join(values)}")  # fmt: skip
        operation, name = doc.get("operation"), doc.get("object")
        if not name:
            return _errors(400, "INVALIDJOB", "InvalidJob : Object is required")
        spec = self.sandbox._objects.get(str(name).lower())
        if spec is None:
            return _errors(400, "INVALIDJOB", f"InvalidJob : Unable to find object: {name}")
        if operation == "hardDelete":
            return _errors(400, "INVALIDJOB", "InvalidJob : hardDelete needs the Bulk API Hard "
                           "Delete permission, which the sandbox user does not have")  # fmt: skip
        if operation not in OPERATIONS:
            return _errors(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}; "
                           "ingest jobs insert, update, upsert, delete or hardDelete")  # fmt: skip
        external = None
        if operation == "upsert":
            wanted = doc.get("externalIdFieldName")
            if not wanted:
                return _errors(400, "INVALIDJOB", f"InvalidJob : External ID was blank for "
                               f"{spec.name}. An External ID must be specified for "
                               "upsert.")  # fmt: skip
            found = next((f for f in spec.fields if f.name.lower() == str(wanted).lower()), None)
            if found is None or not found.external_id:
                return _errors(400, "INVALIDJOB", f"InvalidJob : Field name provided, {wanted} "
                               "does not match an External ID, Salesforce Id, or indexed field "
                               f"for {spec.name}")  # fmt: skip
            external = found.name
        self._count += 1
        now = _stamp()
        ending, delimiter = doc.get("lineEnding", "LF"), doc.get("columnDelimiter", "COMMA")
        job = Job(data.record_id("750", self._count), spec.name, operation, external, ending,
                  delimiter, version, now)  # fmt: skip
        self.jobs[job.id] = job
        return Reply(200, json_body(job.info()))

    def _upload(self, job: Job, headers: Mapping[str, str], body: bytes) -> Reply:
        from flow_assets.sandbox.salesforce import _errors

        if job.state != "Open":
            return _errors(400, "INVALIDJOBSTATE", f"InvalidJobState : the job is {job.state}; "
                           "data is uploaded only while it is Open")  # fmt: skip
        if job.upload is not None:
            return _errors(400, "INVALIDJOBSTATE", _MULTIPLE.format(id=job.id))
        if not (headers.get("Content-Type") or "").lower().startswith(_CSV):
            return _errors(415, "UNSUPPORTED_MEDIA_TYPE",
                           "Content-Type text/csv is required to upload job data")  # fmt: skip
        if not body:
            return _errors(400, "INVALIDBATCH", "InvalidBatch : no data to upload")
        if len(body) > MAX_UPLOAD_BYTES:
            too_big = "InvalidBatch : the upload exceeds 150 MB of base64-encoded content"
            return _errors(400, "INVALIDBATCH", too_big)
        try:
            job.upload = body.decode("utf-8")
        except UnicodeDecodeError:
            return _errors(400, "INVALIDBATCH", "InvalidBatch : job data must be UTF-8")
        job.modstamp = _stamp()
        return Reply(201)

    def _change_state(self, job: Job, body: bytes) -> Reply:
        from flow_assets.sandbox.salesforce import _errors

        try:
            wanted = json.loads(body or b"null").get("state")
        except (ValueError, AttributeError):
            return _errors(400, "JSON_PARSER_ERROR", 'The request body must be {"state": ...}')
        allowed = {"UploadComplete": ("Open",), "Aborted": ("Open", "UploadComplete", "InProgress")}
        if wanted not in allowed:
            return _errors(400, "INVALIDJOBSTATE", f"InvalidJobState : state {wanted} cannot be "
                           "set; set UploadComplete or Aborted")  # fmt: skip
        if job.state not in allowed[wanted]:
            return _errors(400, "INVALIDJOBSTATE", f"InvalidJobState : the job is {job.state}; "
                           f"it cannot become {wanted}")  # fmt: skip
        job.state, job.modstamp = wanted, _stamp()
        return Reply(200, json_body(job.info()))

    def _results(self, job: Job, which: str) -> Reply:
        if job.upload is not None and not job.header:
            _parse(job)  # a job ended before it was processed: its records are unprocessed
        order = list(range(len(job.rows)))
        random.Random(job.id).shuffle(order)  # Salesforce promises no order either
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        if which == "successfulresults":
            writer.writerow(["sf__Id", "sf__Created", *job.header])
            writer.writerows([job.succeeded[i][0], str(job.succeeded[i][1]).lower(), *job.rows[i]]
                             for i in order if i in job.succeeded)  # fmt: skip
        elif which == "failedresults":
            writer.writerow(["sf__Id", "sf__Error", *job.header])
            writer.writerows([*job.failed[i], *job.rows[i]] for i in order if i in job.failed)
        else:
            if job.header:
                writer.writerow(job.header)
            done = job.succeeded.keys() | job.failed.keys()
            writer.writerows(job.rows[i] for i in order if i not in done)
        return Reply(200, out.getvalue().encode(), {"Content-Type": f"{_CSV};charset=UTF-8"})

    # --- processing --------------------------------------------------------------------

    def _advance(self, job: Job) -> None:
        """A poll: UploadComplete becomes InProgress; after `processing_polls` polls the job
        is processed and ends JobComplete or Failed."""
        if job.state == "UploadComplete":
            job.state, job.modstamp = "InProgress", _stamp()
        elif job.state == "InProgress":
            job.polls += 1
            if job.polls >= self.processing_polls:
                self._process(job)

    def _process(self, job: Job) -> None:
        problem = self._read(job)
        if problem is not None:
            job.state, job.error_message, job.modstamp = "Failed", problem, _stamp()
            return
        allowed = min(len(job.rows), self.daily_records)
        for start in range(0, allowed, CHUNK):
            self._apply(job, range(start, min(start + CHUNK, allowed)))
        self.daily_records -= allowed
        job.state, job.modstamp = "JobComplete", _stamp()
        if allowed < len(job.rows):
            job.state = "Failed"
            job.error_message = (
                "ExceededQuota : the org's Bulk API allocation of records per rolling 24 hours "
                "is used up; the job's remaining records were not processed"
            )

    def _read(self, job: Job) -> str | None:
        """Parse the upload into header and rows; what fails the whole job, if anything."""
        if job.upload is None:
            return "InvalidBatch : no data was uploaded for the job"
        problem = _parse(job)
        if problem is not None:
            return problem
        first = _header_end(job.upload)
        crlf = first is not None and job.upload[first - 1 : first + 1] == "\r\n"
        if crlf != (job.line_ending == "CRLF"):
            return (f"ClientInputError : LineEnding is invalid on user data. Current LineEnding "
                    f"setting is {job.line_ending}")  # fmt: skip
        names = {f.name.lower(): f.name for f in data.OBJECTS[job.object].fields}
        seen: set[str] = set()
        for column in job.header:
            name = names.get(column.strip().lower())
            if name is None:
                return f"InvalidBatch : Field name not found : {column}"
            if name in seen:
                return f"InvalidBatch : Duplicate field name : {column}"
            seen.add(name)
        if job.operation == "delete" and [names[c.strip().lower()] for c in job.header] != ["Id"]:
            return "InvalidBatch : The 'delete' batch must contain only 'Id'"
        wrong = next((n for n, row in enumerate(job.rows, 2) if len(row) != len(job.header)), None)
        if wrong is not None:
            return f"InvalidBatch : row {wrong} has a different number of fields than the header"
        return None

    def _apply(self, job: Job, numbers: range) -> None:
        """One batch of the job's records through the same checks as sObject Collections."""
        spec = data.OBJECTS[job.object]
        fields = {f.name.lower(): f for f in spec.fields}
        columns = [fields[c.strip().lower()] for c in job.header]
        records, sent = [], []
        for n in numbers:
            try:
                values = _values(columns, job.rows[n])
            except writes.RecordError as exc:
                job.failed[n] = ("", _error_text([exc.as_json()]))
                continue
            if job.operation == "delete":
                records.append({"Id": values.get("Id") or ""})
            else:
                records.append({"attributes": {"type": spec.name}, **values})
            sent.append(n)
        method = OPERATIONS[job.operation]
        for n, result in zip(sent, writes.apply(self.sandbox, method, job.external, records),
                             strict=True):  # fmt: skip
            if result["success"]:
                created = job.operation == "insert" or bool(result.get("created"))
                job.succeeded[n] = (result["id"], created)
            else:
                job.failed[n] = (result.get("id", ""), _error_text(result["errors"]))


def _parse(job: Job) -> str | None:
    """The upload as the job's header and rows; what keeps it from being read, if anything."""
    text = job.upload or ""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[job.delimiter],
                        strict=True)  # fmt: skip
    try:
        lines = [row for row in reader if row]
    except csv.Error as exc:
        return f"InvalidBatch : the CSV could not be parsed ({exc})"
    if not lines:
        return "InvalidBatch : the CSV has no header row"
    job.header, job.rows = lines[0], lines[1:]
    return None


def _values(columns: list[data.FieldSpec], row: list[str]) -> dict[str, Any]:
    """A CSV row as the JSON values sObject Collections would carry: an empty field is left
    out (left unchanged), #N/A is null, numbers and booleans parsed; a value of the wrong type
    is the error sObject Collections gives it."""
    values: dict[str, Any] = {}
    for f, text in zip(columns, row, strict=True):
        if text == "":
            continue
        if text == "#N/A":
            values[f.name] = None
            continue
        try:
            if f.type in _NUMBERS:
                number = _NUMBERS[f.type](text)
                if number != number or number in (float("inf"), float("-inf")):
                    raise ValueError(text)
                values[f.name] = number
            elif f.type == "boolean":
                values[f.name] = {"true": True, "false": False, "1": True, "0": False}[
                    text.strip().lower()
                ]
            else:
                values[f.name] = text
        except (ValueError, KeyError):
            why = f"{f.name}: value not of required type"  # sObject Collections' words
            raise writes.RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD", why, [f.name]) from None
    return values


def _error_text(errors: list[dict[str, Any]]) -> str:
    """Errors as sf__Error writes them: CODE:message:fields --"""
    return " ".join(
        f"{e['statusCode']}:{e['message']}:{','.join(e.get('fields') or [])} --" for e in errors
    )


def _header_end(text: str) -> int | None:
    """Where the header row's line break is (outside quotes), if it has one."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "\n" and not quoted:
            return i
    return None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000+0000"

"""What every contender shares: the query, the transform's constants, the token, the result."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import requests

OBJECT = "Opportunity"
FIELDS = [
    "Id",
    "Name",
    "Amount",
    "StageName",
    "CloseDate",
    "Email__c",
    "Phone__c",
    "SystemModstamp",
]
SOQL = f"SELECT {', '.join(FIELDS)} FROM {OBJECT}"
API_VERSION = "59.0"
QUERY_PATH = f"/services/data/v{API_VERSION}/query/"
PAGE_HEADERS = {"Sforce-Query-Options": "batchSize=2000"}
# The transform, as bench/flows/bench_opportunities.yaml states it for Flowbridge.
EXCLUDED_STAGE = "Closed Lost"  # filter: StageName not_equal_to this
MASKED = "Email__c"  # mask: sha256
CHECKED = "Amount"  # validate: non_negative (null passes), quarantine
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"  # Salesforce's 2024-03-01T12:00:00.000+0000
RESULT_PREFIX = "BENCH-RESULT "  # the child's last stdout line: this prefix and a JSON object


@dataclass
class Sandbox:
    """Where the sandbox runs and the credentials of its connected app (from the environment)."""

    url: str
    client_id: str
    client_secret: str

    @classmethod
    def from_env(cls) -> Sandbox:
        return cls(
            url=os.environ["SALESFORCE_SANDBOX_URL"],
            client_id=os.environ["SALESFORCE_SANDBOX_CLIENT_ID"],
            client_secret=os.environ["SALESFORCE_SANDBOX_CLIENT_SECRET"],
        )

    def token(self) -> tuple[str, str]:
        """(access token, instance URL) from the OAuth 2.0 client-credentials grant."""
        answer = requests.post(
            self.url.rstrip("/") + "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            timeout=30,
        )
        answer.raise_for_status()
        body = answer.json()
        return body["access_token"], body["instance_url"].rstrip("/")


@dataclass
class Result:
    """One contender's run, as its child process reports it."""

    contender: str
    records_read: int
    records_loaded: int
    records_filtered: int  # by the filter, plus (dlt) the negative amounts dropped
    records_rejected: int  # quarantined with a reason (Flowbridge only; dlt drops them)
    seconds: float  # wall time of the pipeline run itself, imports excluded
    rows_in_destination: int  # counted back from what was written
    rss_before_mb: float = 0.0  # peak RSS after imports and set-up, before the run
    peak_rss_mb: float = 0.0  # the child's own ru_maxrss (the parent also measures it)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        return self.records_read / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return RESULT_PREFIX + json.dumps(asdict(self))

    @classmethod
    def parse(cls, text: str) -> Result | None:
        for line in reversed(text.splitlines()):
            if line.startswith(RESULT_PREFIX):
                return cls(**json.loads(line.removeprefix(RESULT_PREFIX)))
        return None

"""Deterministic sample data and sObject metadata served by the Salesforce sandbox."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

# Every generated value is a pure function of (seed, object, row index), computed with
# a splitmix64 hash written as Polars expressions: no Python loop per row, and the same
# seed and count give the same bytes whatever the Polars version.
_U64 = pl.UInt64
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)  # exclusive: the last stamp falls on 2025-12-31
_START_MS = int(START.timestamp() * 1000)
_SPAN_MS = int(END.timestamp() * 1000) - _START_MS
_DAY_MS = 86_400_000
_EPOCH_DAY_2024 = (date(2024, 1, 1) - date(1970, 1, 1)).days

ORG_ID = "00DHs0000000001IAA"
USER_ID = "005Hs0000000001IAA"
MAX_RECORDS = 99_999_999  # the record number is 8 decimal digits of the Id


def _splitmix(x: int) -> int:
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK
    return x ^ (x >> 31)


def _u64(v: int) -> pl.Expr:
    return pl.lit(v, dtype=_U64)


def _mix(x: pl.Expr) -> pl.Expr:
    # Right shifts as floor division: Polars has no shift operator, and UInt64
    # multiplication wraps like the C original.
    x = x.xor(x // _u64(1 << 30)) * _u64(_MIX1)
    x = x.xor(x // _u64(1 << 27)) * _u64(_MIX2)
    return x.xor(x // _u64(1 << 31))


class _Rand:
    """Independent uniform [0, 1) streams keyed by (seed, object, stream number)."""

    def __init__(self, seed: int, salt: int) -> None:
        self._key = _splitmix((seed * 0x100000001B3 + salt) & _MASK)

    def u(self, stream: int, index: pl.Expr | None = None) -> pl.Expr:
        idx = (pl.col("i") if index is None else index).cast(_U64)
        key = _splitmix((self._key + stream * 0x2545F4914F6CDD1D) & _MASK)
        h = _mix(idx * _u64(_GOLDEN) + _u64(key))
        return (h // _u64(1 << 11)).cast(pl.Float64) * (1.0 / (1 << 53))


def _table(values: Sequence[str], k: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(values, dtype=pl.String)).gather(k)


def _index(u: pl.Expr, size: int) -> pl.Expr:
    return (u * size).floor().cast(pl.Int64)


def _pick(u: pl.Expr, values: Sequence[str]) -> pl.Expr:
    return _table(values, _index(u, len(values)))


def _weighted(u: pl.Expr, choices: Sequence[tuple[str, float]]) -> pl.Expr:
    total = sum(w for _, w in choices)
    bounds, acc = [], 0.0
    for _, w in choices[:-1]:
        acc += w / total
        bounds.append(acc)
    k = pl.lit(pl.Series(bounds, dtype=pl.Float64)).search_sorted(u, side="right")
    return _table([v for v, _ in choices], k.cast(pl.Int64))


def _id_suffix(body: str) -> str:
    """The 3-character case-safe suffix that turns a 15-character Id into 18."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    out = ""
    for chunk in (body[0:5], body[5:10], body[10:15]):
        bits = sum(1 << n for n, ch in enumerate(chunk) if "A" <= ch <= "Z")
        out += alphabet[bits]
    return out


def record_id(prefix: str, number: int) -> str:
    """The 18-character Id of record `number` (1-based) of the object with `prefix`."""
    body = f"{prefix}Hs00{number:08d}"
    return body + _id_suffix(body)


def _ids(prefix: str, index: pl.Expr) -> pl.Expr:
    # Only decimal digits vary between records and digits never set a suffix bit,
    # so the suffix is the same for every record of the object. Zero-padding keeps
    # Id order equal to row order.
    head = f"{prefix}Hs00"
    suffix = _id_suffix(head + "0" * 8)
    return pl.concat_str([pl.lit(head), (index + 1).cast(pl.String).str.zfill(8), pl.lit(suffix)])


def record_number(record_id_: str, prefix: str) -> int | None:
    """Row index encoded in an Id produced by `record_id`, or None if it is not one."""
    rid = record_id_[:15]
    if len(rid) != 15 or not rid.startswith(prefix + "Hs00") or not rid[7:].isdigit():
        return None
    return int(rid[7:]) - 1


def _stamps(rand: _Rand, n: int, streams: tuple[int, int, int]) -> list[pl.Expr]:
    """CreatedDate <= LastModifiedDate <= SystemModstamp, SystemModstamp strictly
    increasing with the row index across 2024-01-01 .. 2025-12-31."""
    step = _SPAN_MS // n
    i = pl.col("i")
    # floor(i * span / n) grows by at least `step` per row and the jitter stays
    # below `step`, so consecutive stamps differ by at least one millisecond.
    sys_ms = (
        pl.lit(_START_MS) + (i * _SPAN_MS) // n + (rand.u(streams[0]) * step).floor().cast(pl.Int64)
    )
    created_ms = sys_ms - (rand.u(streams[1]) * 120 * _DAY_MS).floor().cast(pl.Int64)
    modified_ms = sys_ms - (rand.u(streams[2]).pow(3) * (sys_ms - created_ms)).floor().cast(
        pl.Int64
    )

    def as_dt(ms: pl.Expr) -> pl.Expr:
        return ms.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")

    return [
        as_dt(created_ms).alias("CreatedDate"),
        as_dt(modified_ms).alias("LastModifiedDate"),
        as_dt(sys_ms).alias("SystemModstamp"),
    ]


# --- vocabulary ------------------------------------------------------------------


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_WORD1 = _words(
    "Blue Northern Summit Granite Silver Pacific Atlas Cedar Evergreen Harbor Iron Lakeside"
    " Maple Orion Pioneer Quantum Redwood Sterling Union Vertex Westfield Golden Crescent"
    " Falcon"
)
_WORD2 = _words(
    "River Peak Ridge Bridge Field Harbor Stone Valley Point Forge Grove Light Works Lake Hill Gate"
)
_SUFFIX = _words("Inc. LLC Ltd Corp. Group Holdings Partners Logistics Systems Industries")
# Names that break naive quoting, escaping and encoding; `%` and `_` exercise LIKE escapes.
_SPECIAL_NAMES = (
    "O'Brien & Sons",
    'The "Quoted" Company',
    "Café Mötley GmbH",
    "Zürich Präzision AG",
    "東京トレーディング株式会社",
    "L'Oréal Partners",
    "Back\\Slash Ltd",
    "Ñandú Exportaciones",
    "Ørsted Wind A/S",
    "100% Juice Co_op",
)
_DEALS = _words(
    "New Business|Renewal|Upsell|Expansion|Pilot|Services|Add-On|Migration",
    "|",
)
_FIRST = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara"
    " Richard Susan Joseph Jessica Thomas Sarah Carlos Mei Aisha Lars Priya Kenji"
)
_LAST = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez"
    " Lopez Wilson Anderson Thomas Taylor Moore Jackson Nguyen Kim Patel Schmidt Rossi"
    " Tanaka"
)
_DOMAINS = _words("example.com acme.example mail.example.org corp.example.net example.co.uk")
_AREAS = _words("415 212 312 617 206 303 512 646 718 213")
_TITLES = _words(
    "CEO|CFO|VP Sales|Director of Operations|Procurement Manager|IT Manager|Buyer"
    "|Office Manager|Head of Finance|Engineer",
    "|",
)
_CITIES = tuple(
    tuple(pair.split(", "))
    for pair in _words(
        "San Francisco, United States|New York, United States|Chicago, United States"
        "|London, United Kingdom|Berlin, Germany|Paris, France|Tokyo, Japan"
        "|Toronto, Canada|São Paulo, Brazil|Zürich, Switzerland",
        "|",
    )
)
_DESCRIPTIONS = (
    "Customer asked for a revised quote.",
    "Follow up after the demo.\nDecision expected next quarter.",
    'Champion says the budget is "approved".',
    "Multi-year deal; legal review pending.",
    "Competitor displaced — pricing was the key factor.",
    "Expansion into the EMEA region.",
    "Renewal at current pricing, 3% uplift.",
)
STAGES = (
    ("Prospecting", 10.0, 0.14),
    ("Qualification", 10.0, 0.10),
    ("Needs Analysis", 20.0, 0.08),
    ("Value Proposition", 50.0, 0.07),
    ("Id. Decision Makers", 60.0, 0.05),
    ("Perception Analysis", 70.0, 0.04),
    ("Proposal/Price Quote", 75.0, 0.07),
    ("Negotiation/Review", 90.0, 0.05),
    ("Closed Won", 100.0, 0.22),
    ("Closed Lost", 0.0, 0.18),
)
_ACCOUNT_TYPES = _words(
    "Prospect|Customer - Direct|Customer - Channel|Channel Partner / Reseller"
    "|Installation Partner|Technology Partner|Other",
    "|",
)
_INDUSTRIES = _words(
    "Agriculture Banking Biotechnology Chemicals Communications Construction Consulting"
    " Education Electronics Energy Engineering Finance Healthcare Insurance Manufacturing"
    " Media Retail Technology Transportation Utilities"
)
_LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")

_SALT = {"Account": 1, "Contact": 2, "Opportunity": 3}


# Strings are built once per vocabulary combination in Python (a few thousand) and
# gathered per row: far cheaper than formatting a million strings branch by branch.
_PLAIN_NAMES = tuple(f"{a} {b} {c}" for a in _WORD1 for b in _WORD2 for c in _SUFFIX)
_COMPANY_NAMES = _PLAIN_NAMES + _SPECIAL_NAMES
_OPPORTUNITY_NAMES = tuple(f"{c} - {d}" for c in _COMPANY_NAMES for d in _DEALS)


def _company_key(seed: int, index: pl.Expr) -> pl.Expr:
    """Index into _COMPANY_NAMES of the account at `index`; opportunities reuse it."""
    r = _Rand(seed, _SALT["Account"])
    plain = _index(r.u(101, index), len(_PLAIN_NAMES))
    # A fixed stride and order (not a random share) so that even a small org holds
    # the first few awkward names, starting with the quoted ones.
    special = len(_PLAIN_NAMES) + (index // 61) % len(_SPECIAL_NAMES)
    return pl.when(index % 61 == 7).then(special).otherwise(plain)


_PHONE_FORMATS = ("({a}) 555-{n}", "{a}.555.{n}", "+1 {a}-555-{n}", "{a}555{n}", "{a}-555-{n}")
# 555-0100..0199 is the range reserved for fictional numbers.
_PHONES = tuple(
    f.format(a=a, n=f"{n:04d}") for a in _AREAS for n in range(100, 200) for f in _PHONE_FORMATS
)


def _phone(r: _Rand, streams: tuple[int, int], null_share: float) -> pl.Expr:
    return (
        pl.when(r.u(streams[1]) < null_share)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(_table(_PHONES, _index(r.u(streams[0]), len(_PHONES))))
    )


def _email_variants(first: str, last: str, domain: str) -> tuple[str, ...]:
    f, ln = first.lower(), last.lower()
    well_formed = (
        f"{f}.{ln}@{domain}",
        f"{f}.{ln}@{domain}",
        f"{first}.{last}@{domain}",
        f"{f}.{ln}@{domain}".upper(),
        f"{first[0]}{last}@{domain.upper()}",
    )
    malformed = (f"{f}.{ln}.{domain}", f"{ln}@@{domain}", f"{first} {last}@{domain}")
    return well_formed + malformed


_EMAILS = tuple(
    e for a in _FIRST for b in _LAST for d in _DOMAINS for e in _email_variants(a, b, d)
)
_EMAIL_VARIANTS = 8


def _email(r: _Rand, person: pl.Expr, streams: tuple[int, int, int]) -> pl.Expr:
    """Mixed-case addresses, about 1% malformed and 2% missing; `person` indexes
    _FIRST x _LAST."""
    bad = r.u(streams[2])
    variant = (
        pl.when(bad < 0.01).then(5 + _index(bad * 100, 3)).otherwise(_index(r.u(streams[1]), 5))
    )
    domain = _index(r.u(streams[0]), len(_DOMAINS))
    key = (person * len(_DOMAINS) + domain) * _EMAIL_VARIANTS + variant
    return (
        pl.when((bad >= 0.01) & (bad < 0.03))
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(_table(_EMAILS, key))
    )


def _base(n: int) -> pl.DataFrame:
    return pl.DataFrame({"i": pl.int_range(0, n, dtype=pl.Int64, eager=True)})


def build_account(n: int, seed: int) -> pl.DataFrame:
    r = _Rand(seed, _SALT["Account"])
    i = pl.col("i")
    city = _index(r.u(8), len(_CITIES))
    slugs = [re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") for name in _COMPANY_NAMES]
    websites = [f"https://www.{slug or 'account'}.example.com" for slug in slugs]
    return (
        _base(n)
        .with_columns(_company_key(seed, i).alias("_company"))
        .select(
            _ids("001", i).alias("Id"),
            pl.lit(False).alias("IsDeleted"),
            _table(_COMPANY_NAMES, pl.col("_company")).alias("Name"),
            _pick(r.u(1), _ACCOUNT_TYPES).alias("Type"),
            _pick(r.u(2), _INDUSTRIES).alias("Industry"),
            pl.when(r.u(3) < 0.2)
            .then(None)
            .otherwise(((r.u(4) * math.log(10_000)).exp() * 50_000).round(0))
            .alias("AnnualRevenue"),
            pl.when(r.u(5) < 0.1)
            .then(None)
            .otherwise((r.u(6) * math.log(50_000)).exp().floor().cast(pl.Int64) + 1)
            .alias("NumberOfEmployees"),
            _phone(r, (10, 11), 0.05).alias("Phone"),
            pl.when(r.u(7) < 0.15)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(_table(websites, pl.col("_company")))
            .alias("Website"),
            _table([c for c, _ in _CITIES], city).alias("BillingCity"),
            _table([k for _, k in _CITIES], city).alias("BillingCountry"),
            *_stamps(r, n, (20, 21, 22)),
        )
    )


def build_contact(n: int, seed: int, n_accounts: int) -> pl.DataFrame:
    r = _Rand(seed, _SALT["Contact"])
    i = pl.col("i")
    first = _index(r.u(2), len(_FIRST))
    last = _index(r.u(3), len(_LAST))
    birth_day = _index(r.u(5), 365 * 45) + (_EPOCH_DAY_2024 - 365 * 65)
    return (
        _base(n)
        .with_columns(first.alias("_first"), last.alias("_last"))
        .select(
            _ids("003", i).alias("Id"),
            pl.lit(False).alias("IsDeleted"),
            _ids("001", _index(r.u(1), n_accounts)).alias("AccountId"),
            _table(_LAST, pl.col("_last")).alias("LastName"),
            _table(_FIRST, pl.col("_first")).alias("FirstName"),
            _table(
                [f"{a} {b}" for a in _FIRST for b in _LAST],
                pl.col("_first") * len(_LAST) + pl.col("_last"),
            ).alias("Name"),
            pl.when(r.u(4) < 0.1)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(_pick(r.u(6), _TITLES))
            .alias("Title"),
            _email(r, pl.col("_first") * len(_LAST) + pl.col("_last"), (7, 8, 9)).alias("Email"),
            _phone(r, (10, 11), 0.05).alias("Phone"),
            pl.when(r.u(14) < 0.3)
            .then(None)
            .otherwise(birth_day.cast(pl.Int32).cast(pl.Date))
            .alias("Birthdate"),
            _pick(r.u(15), _LEAD_SOURCES).alias("LeadSource"),
            *_stamps(r, n, (20, 21, 22)),
        )
    )


def build_opportunity(n: int, seed: int, n_accounts: int) -> pl.DataFrame:
    r = _Rand(seed, _SALT["Opportunity"])
    i = pl.col("i")
    account = _index(r.u(1), n_accounts)
    stage = _weighted(r.u(3), [(name, w) for name, _, w in STAGES])
    probability = {name: p for name, p, _ in STAGES}
    # 300 * 666.67^(u^1.5) spans ~300 .. 200,000 with about a third above 10,000.
    amount = ((r.u(4).pow(1.5) * math.log(200_000 / 300)).exp() * 300).round(2)
    bad = r.u(5)
    person = _index(r.u(10), len(_FIRST) * len(_LAST))
    return (
        _base(n)
        .with_columns(stage.alias("StageName"), account.alias("_account"))
        .select(
            _ids("006", i).alias("Id"),
            pl.lit(False).alias("IsDeleted"),
            _ids("001", pl.col("_account")).alias("AccountId"),
            _table(
                _OPPORTUNITY_NAMES,
                _company_key(seed, pl.col("_account")) * len(_DEALS) + _index(r.u(2), len(_DEALS)),
            ).alias("Name"),
            pl.when(r.u(6) < 0.35)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(_pick(r.u(7), _DESCRIPTIONS))
            .alias("Description"),
            pl.col("StageName"),
            # Nulls and negatives are the bad data a validation step has to quarantine.
            pl.when(bad < 0.015)
            .then(None)
            .when(bad < 0.025)
            .then(-amount)
            .otherwise(amount)
            .alias("Amount"),
            pl.col("StageName")
            .replace_strict(probability, return_dtype=pl.Float64)
            .alias("Probability"),
            pl.when(r.u(8) < 0.1)
            .then(None)
            .otherwise((r.u(9) * 1000).floor() / 2 + 1)
            .alias("TotalOpportunityQuantity"),
            (_index(r.u(12), 912).cast(pl.Int32) + _EPOCH_DAY_2024)
            .cast(pl.Date)
            .alias("CloseDate"),
            pl.col("StageName").str.starts_with("Closed").alias("IsClosed"),
            (pl.col("StageName") == "Closed Won").alias("IsWon"),
            *_stamps(r, n, (20, 21, 22)),
            _email(r, person, (13, 14, 15)).alias("Email__c"),
            _phone(r, (16, 17), 0.03).alias("Phone__c"),
            # The key a system outside Salesforce knows the record by (upserts match on it).
            pl.concat_str(pl.lit("OPP-"), (i + 1).cast(pl.String).str.zfill(8)).alias(
                "External_Id__c"
            ),
        )
    )


# --- metadata ----------------------------------------------------------------------

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "picklist": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "textarea": "xsd:string",
    "url": "xsd:string",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
POLARS_TYPES: dict[str, pl.DataType] = {
    "currency": pl.Float64(),
    "double": pl.Float64(),
    "percent": pl.Float64(),
    "int": pl.Int64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("ms", "UTC"),
}
_SYSTEM = frozenset({"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"})


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    type: str
    nillable: bool = False
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    custom: bool = False
    picklist: tuple[str, ...] = ()
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    name_field: bool = False
    external_id: bool = False

    @property
    def polars_type(self) -> pl.DataType:
        return POLARS_TYPES.get(self.type, pl.String())

    def describe(self) -> dict[str, Any]:
        """The field as it appears in an sObject Describe `fields` entry."""
        system = self.name in _SYSTEM
        writable = not (system or self.type == "id" or self.name in ("IsClosed", "IsWon"))
        textual = _SOAP_TYPES[self.type] == "xsd:string" or self.type in ("id", "reference")
        return {
            "aggregatable": self.type not in ("textarea", "boolean"),
            "aiPredictionField": False,
            "autoNumber": False,
            "byteLength": self.length * 3 if textual else 0,
            "calculated": False,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": None,
            "controllerName": None,
            "createable": writable,
            "custom": self.custom,
            "defaultValue": False if self.type == "boolean" else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.type == "boolean" or system,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.digits,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": "plaintextarea" if self.type == "textarea" else None,
            "filterable": self.type != "textarea",
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.type not in ("textarea", "currency", "double", "percent"),
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.type == "id" or self.external_id,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": False,
            "nillable": self.nillable,
            "permissionable": self.nillable and not system,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": False,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "polymorphicForeignKey": False,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": False,
            "scale": self.scale,
            "searchPrefilterable": False,
            "soapType": _SOAP_TYPES[self.type],
            "sortable": self.type != "textarea",
            "type": self.type,
            "unique": self.external_id,
            "updateable": writable,
            "writeRequiresMasterRead": False,
        }


def _text(name: str, label: str, length: int, **kw: Any) -> FieldSpec:
    return FieldSpec(name, label, kw.pop("type", "string"), length=length, **kw)


def _system_fields(prefix_fields: Sequence[FieldSpec]) -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Id", "Record ID", "id", length=18),
        FieldSpec("IsDeleted", "Deleted", "boolean"),
        *prefix_fields,
        FieldSpec("CreatedDate", "Created Date", "datetime"),
        FieldSpec("LastModifiedDate", "Last Modified Date", "datetime"),
        FieldSpec("SystemModstamp", "System Modstamp", "datetime"),
    )


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    build: Callable[[int, int, int], pl.DataFrame]
    children: tuple[tuple[str, str, str], ...] = field(default=())

    def field_types(self) -> dict[str, str]:
        return {f.name: f.type for f in self.fields}


_ACCOUNT_FIELDS = _system_fields(
    (
        _text("Name", "Account Name", 255, name_field=True),
        _text("Type", "Account Type", 255, type="picklist", nillable=True, picklist=_ACCOUNT_TYPES),
        _text("Industry", "Industry", 255, type="picklist", nillable=True, picklist=_INDUSTRIES),
        FieldSpec("AnnualRevenue", "Annual Revenue", "currency", True, precision=18),
        FieldSpec("NumberOfEmployees", "Employees", "int", True, digits=8),
        _text("Phone", "Account Phone", 40, type="phone", nillable=True),
        _text("Website", "Website", 255, type="url", nillable=True),
        _text("BillingCity", "Billing City", 40, nillable=True),
        _text("BillingCountry", "Billing Country", 80, nillable=True),
    )
)
_CONTACT_FIELDS = _system_fields(
    (
        FieldSpec(
            "AccountId",
            "Account ID",
            "reference",
            True,
            length=18,
            reference_to=("Account",),
            relationship_name="Account",
        ),
        _text("LastName", "Last Name", 80),
        _text("FirstName", "First Name", 40, nillable=True),
        _text("Name", "Full Name", 121, name_field=True),
        _text("Title", "Title", 128, nillable=True),
        _text("Email", "Email", 80, type="email", nillable=True),
        _text("Phone", "Business Phone", 40, type="phone", nillable=True),
        FieldSpec("Birthdate", "Birthdate", "date", True),
        _text(
            "LeadSource", "Lead Source", 255, type="picklist", nillable=True, picklist=_LEAD_SOURCES
        ),  # fmt: skip
    )
)
_OPPORTUNITY_FIELDS = _system_fields(
    (
        FieldSpec(
            "AccountId",
            "Account ID",
            "reference",
            True,
            length=18,
            reference_to=("Account",),
            relationship_name="Account",
        ),
        _text("Name", "Name", 120, name_field=True),
        _text("Description", "Description", 32000, type="textarea", nillable=True),
        _text("StageName", "Stage", 255, type="picklist", picklist=tuple(s for s, _, _ in STAGES)),
        FieldSpec("Amount", "Amount", "currency", True, precision=18, scale=2),
        FieldSpec("Probability", "Probability (%)", "percent", True, precision=3),
        FieldSpec("TotalOpportunityQuantity", "Quantity", "double", True, precision=18, scale=2),
        FieldSpec("CloseDate", "Close Date", "date"),
        FieldSpec("IsClosed", "Closed", "boolean"),
        FieldSpec("IsWon", "Won", "boolean"),
    )
) + (
    _text("Email__c", "Contact Email", 80, type="email", nillable=True, custom=True),
    _text("Phone__c", "Contact Phone", 40, type="phone", nillable=True, custom=True),
    _text("External_Id__c", "External Id", 40, nillable=True, custom=True, external_id=True),
)


def _sizes(records: int) -> dict[str, int]:
    return {
        "Opportunity": records,
        "Account": max(records // 10, 10),
        "Contact": max(records // 2, 10),
    }


OBJECTS: dict[str, ObjectSpec] = {
    "Account": ObjectSpec(
        "Account",
        "Account",
        "Accounts",
        "001",
        _ACCOUNT_FIELDS,
        lambda n, seed, n_acc: build_account(n, seed),
        children=(
            ("Contact", "AccountId", "Contacts"),
            ("Opportunity", "AccountId", "Opportunities"),
        ),
    ),
    "Contact": ObjectSpec("Contact", "Contact", "Contacts", "003", _CONTACT_FIELDS, build_contact),
    "Opportunity": ObjectSpec(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        _OPPORTUNITY_FIELDS,
        build_opportunity,
    ),
}


def build_frame(name: str, records: int, seed: int) -> pl.DataFrame:
    """The typed truth for object `name` in an org whose Opportunity count is `records`."""
    if not 0 <= records <= MAX_RECORDS:
        raise ValueError(f"records must be between 0 and {MAX_RECORDS}")
    sizes = _sizes(records)
    spec = OBJECTS[name]
    frame = spec.build(sizes[name], seed, sizes["Account"])
    # The declared schema is the contract: fail loudly if a builder drifts from it.
    expected = {f.name: f.polars_type for f in spec.fields}
    if dict(frame.schema) != expected:
        raise AssertionError(f"{name} frame schema {frame.schema} != {expected}")
    return frame


def global_entry(spec: ObjectSpec, version: str) -> dict[str, Any]:
    """The object's entry in a Describe Global `sobjects` list."""
    base = f"/services/data/v{version}/sobjects/{spec.name}"
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": True,
        "custom": False,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": True,
        "deprecatedAndHidden": False,
        "feedEnabled": True,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": spec.key_prefix,
        "label": spec.label,
        "labelPlural": spec.label_plural,
        "layoutable": True,
        "mergeable": spec.name != "Opportunity",
        "mruEnabled": True,
        "name": spec.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": True,
        "updateable": True,
        "urls": {
            "rowTemplate": base + "/{ID}",
            "defaultValues": base + "/defaultValues?recordTypeId&fields",
            "describe": base + "/describe",
            "sobject": base,
        },
    }


def describe(spec: ObjectSpec, version: str) -> dict[str, Any]:
    """The sObject Describe document for `spec`."""
    entry = global_entry(spec, version)
    base = entry["urls"]["sobject"]
    entry.update(
        {
            "actionOverrides": [],
            "childRelationships": [
                {
                    "cascadeDelete": False,
                    "childSObject": child,
                    "deprecatedAndHidden": False,
                    "field": fld,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": rel,
                    "restrictedDelete": False,
                }
                for child, fld, rel in spec.children
            ],
            "compactLayoutable": True,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [f.describe() for f in spec.fields],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": "012000000000000AAA",
                    "urls": {"layout": f"{base}/describe/layouts/012000000000000AAA"},
                }
            ],
            "searchLayoutable": True,
            "supportedScopes": [
                {"label": "All " + spec.label_plural.lower(), "name": "everything"}
            ],
            "urls": {
                **entry["urls"],
                "compactLayouts": base + "/describe/compactLayouts",
                "approvalLayouts": base + "/describe/approvalLayouts",
                "listviews": base + "/listviews",
                "quickActions": base + "/quickActions",
                "layouts": base + "/describe/layouts",
            },
        }
    )
    return dict(sorted(entry.items()))

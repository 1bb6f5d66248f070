"""The HubSpot destination against a sandbox of its own (writes change its data): batch upsert by
a contact's email and by a deal's custom unique property, batch create, read back through the
sandbox's list and search API; 100 records a call; refused records in the error location with
HubSpot's category and message and none of their values; a 5xx on batch/create not repeated,
on batch/upsert repeated; the vendor's Python client against the same endpoints; and the example
flow Salesforce Contacts -> HubSpot contacts end to end."""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.hubspot import HubSpotConnection
from flow_assets.destinations.hubspot_sink import HubSpotIOManager
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.staging import ParquetBatchWriter
from flow_assets.sandbox.hubspot import HubSpotSandbox
from tests.conftest import copy_project, materialization, run_flow

OAUTH = {"client_id": "tests", "client_secret": "tests-secret", "refresh_token": "tests-refresh"}
RECORDS = 300
CONTACT = ["email", "firstname", "lastname", "lifecyclestage", "annual_income", "date_of_birth"]
DEAL = ["external_id", "dealname", "amount", "dealstage", "closedate", "contract_start_date"]
COMPANY = ["name", "domain", "is_public", "numberofemployees", "founded_date"]
STAMPS = ["hs_lastmodifieddate", "lastmodifieddate"]  # moved by HubSpot on every change
FLOW = "salesforce_contacts_to_hubspot"


@pytest.fixture
def hs(monkeypatch):
    """A sandbox these tests may change; the example connection points at it."""
    with HubSpotSandbox(records=RECORDS, **OAUTH) as sb:
        monkeypatch.setenv("HUBSPOT_SANDBOX_URL", sb.url)
        monkeypatch.setenv("HUBSPOT_SANDBOX_CLIENT_ID", OAUTH["client_id"])
        monkeypatch.setenv("HUBSPOT_SANDBOX_CLIENT_SECRET", OAUTH["client_secret"])
        monkeypatch.setenv("HUBSPOT_SANDBOX_REFRESH_TOKEN", OAUTH["refresh_token"])
        yield sb


def write(sb, tmp_path, frame: pl.DataFrame, how: str, object_name: str = "contacts",
          key: str = "email", **settings) -> dict:  # fmt: skip
    """The destination's handle_output on `frame`, staged as a flow would; its metadata."""
    folder = tmp_path / f"staged-{len(list(tmp_path.glob('staged-*')))}"
    with ParquetBatchWriter(folder, frame.schema) as writer:
        writer.write(frame)
    manager = HubSpotIOManager(
        connection=HubSpotConnection(base_url=sb.url, connection_name="crm", **OAUTH),
        error_root=str(tmp_path / "lake"),
    )
    block = {"connection": "crm", "object": object_name, **settings}
    context = dg.build_output_context(
        asset_key=dg.AssetKey(["f", "records"]), run_id="run-1",
        definition_metadata={"flowbridge/settings": json.dumps(block), "flowbridge/write": how,
                             "flowbridge/key": key if how == "upsert" else ""},
    )  # fmt: skip
    manager.handle_output(context, writer.staged())
    return {k: getattr(v, "value", v) for k, v in context.get_logged_metadata().items()}


def rejected(tmp_path) -> pl.DataFrame:
    return Lake(tmp_path / "lake").scan("f__rejected").collect()


def live(sb, object_name: str) -> pl.DataFrame:
    return sb.frame(object_name).filter(~pl.col("archived"))


def auth(sb) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.access_token}"}


def listed(sb, object_name: str, props: list[str]) -> pl.DataFrame:
    """Every live record as GET /crm/v3/objects/{object} answers it, page by page: text."""
    rows, after = [], None
    while True:
        params = {
            "limit": 100,
            "properties": ",".join(props),
            **({"after": after} if after else {}),
        }
        body = requests.get(f"{sb.url}/crm/v3/objects/{object_name}", params=params,
                            headers=auth(sb), timeout=30).json()  # fmt: skip
        rows += [{"id": r["id"], **r["properties"]} for r in body["results"]]
        after = (body.get("paging") or {}).get("next", {}).get("after")
        if not after:
            return pl.DataFrame(rows, schema={"id": pl.String, **dict.fromkeys(props, pl.String)})


def searched(sb, object_name: str, prop: str, value: str) -> list[dict]:
    query = {"filterGroups": [{"filters": [{"propertyName": prop, "operator": "EQ",
                                            "value": value}]}], "properties": [prop], "limit": 10}  # fmt: skip
    answer = requests.post(f"{sb.url}/crm/v3/objects/{object_name}/search", json=query,
                           headers=auth(sb), timeout=30)  # fmt: skip
    return answer.json()["results"]


def contacts(sb, existing: int, new: int, tag: str) -> pl.DataFrame:
    """New values for the first `existing` live contacts (by email), and `new` new contacts."""
    emails = live(sb, "contacts")["email"].head(existing).to_list()
    emails += [f"new{i}@flowbridge.example" for i in range(new)]
    n = len(emails)
    return pl.DataFrame({
        "email": emails,
        "firstname": [f"First{i} {tag}" for i in range(n)],
        "lastname": [f"Last{i}" for i in range(n)],
        "lifecyclestage": [("lead", "customer", "opportunity")[(i + len(tag)) % 3] for i in range(n)],
        "annual_income": [1000.5 * len(tag) + i for i in range(n)],
        "date_of_birth": [date(1980, 1, 1) + timedelta(days=i + len(tag)) for i in range(n)],
    })  # fmt: skip


def deals(n: int, tag: str) -> pl.DataFrame:
    start = datetime(2025, 3, 1, 12, tzinfo=UTC)
    return pl.DataFrame({
        "external_id": [f"ERP-{i:05d}" for i in range(n)],
        "dealname": [f"ERP deal {i} {tag}" for i in range(n)],
        "amount": [float(i * 100 + len(tag)) + 0.5 for i in range(n)],
        "dealstage": [("qualifiedtobuy", "contractsent", "closedwon")[i % 3] for i in range(n)],
        "closedate": [start + timedelta(days=i, milliseconds=len(tag)) for i in range(n)],
        "contract_start_date": [date(2025, 4, 1) + timedelta(days=i % 90) for i in range(n)],
    }, schema_overrides={"closedate": pl.Datetime("us", "UTC")})  # fmt: skip


def companies(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "name": [f"Created Co {i}" for i in range(n)],
        "domain": [f"created{i}.example.org" for i in range(n)],
        "is_public": [i % 3 == 0 for i in range(n)],
        "numberofemployees": [float(10 + i) for i in range(n)],
        "founded_date": [date(1990, 1, 1) + timedelta(days=i) for i in range(n)],
    })  # fmt: skip


def held(sb, object_name: str, key: str, sent: pl.DataFrame) -> pl.DataFrame:
    rows = live(sb, object_name).filter(pl.col(key).is_in(sent[key].implode()))
    return rows.select(sent.columns).sort(key)


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Typed values as HubSpot's read API writes them."""
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Float64:
            col = col.cast(pl.String).str.replace(r"\.0$", "")
        elif dtype == pl.Date:
            col = col.dt.to_string("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            col = col.dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ")
        out.append(col.cast(pl.String).alias(name))
    return frame.select(out)


def test_upsert_contacts_by_email_holds_exactly_and_a_rerun_changes_nothing(hs, tmp_path):
    sent = contacts(hs, existing=120, new=30, tag="first")
    untouched = live(hs, "contacts").filter(~pl.col("email").is_in(sent["email"].implode()))
    meta = write(hs, tmp_path, sent, "upsert")
    assert (meta["rows_written"], meta["rows_created"], meta["batches"]) == (150, 30, 2)
    assert meta["rows_refused_by_destination"] == 0
    assert meta["destination"] == "hubspot://crm/contacts (upsert)"
    assert_frame_equal(held(hs, "contacts", "email", sent), sent.sort("email"))
    assert_frame_equal(  # through the list API, as text, and nothing else changed
        listed(hs, "contacts", CONTACT).filter(pl.col("email").is_in(sent["email"].implode()))
        .drop("id").sort("email"), as_text(sent).sort("email"),
    )  # fmt: skip
    assert_frame_equal(
        live(hs, "contacts").filter(~pl.col("email").is_in(sent["email"].implode())), untouched
    )
    assert [r["id"] for r in searched(hs, "contacts", "email", "new7@flowbridge.example")] == [
        live(hs, "contacts").filter(pl.col("email") == "new7@flowbridge.example")["id"].item()
    ]

    before = hs.frame("contacts").drop(STAMPS)
    again = write(hs, tmp_path, sent, "upsert")
    assert (again["rows_written"], again["rows_created"]) == (150, 0)
    assert_frame_equal(hs.frame("contacts").drop(STAMPS), before)  # no duplicates, no change


def test_upsert_deals_by_a_custom_unique_property(hs, tmp_path):
    first = deals(120, "first")
    meta = write(hs, tmp_path, first, "upsert", "deals", "external_id", id_property="external_id")
    assert (meta["rows_written"], meta["rows_created"]) == (120, 120)
    edited = pl.concat([deals(130, "edited").slice(90), first.head(90)])  # 30 edits, 10 new
    meta = write(hs, tmp_path, edited, "upsert", "deals", "external_id")
    assert (meta["rows_written"], meta["rows_created"], meta["batches"]) == (130, 10, 2)
    assert_frame_equal(held(hs, "deals", "external_id", edited), edited.sort("external_id"))
    text = listed(hs, "deals", DEAL).filter(pl.col("external_id").is_not_null())
    assert_frame_equal(text.drop("id").sort("external_id"), as_text(edited).sort("external_id"))
    assert live(hs, "deals").height == RECORDS - RECORDS // 25 + 130


def test_batches_of_100_records_a_call(hs, tmp_path):
    sent = contacts(hs, existing=200, new=50, tag="x")
    meta = write(hs, tmp_path, sent, "upsert")
    assert meta["batches"] == 3 and hs.stats()["batch_upsert"] == 3
    assert_frame_equal(held(hs, "contacts", "email", sent), sent.sort("email"))

    before = hs.frame("contacts")
    too_many = {"inputs": [{"properties": {"firstname": "x"}}] * 101}
    answer = requests.post(f"{hs.url}/crm/v3/objects/contacts/batch/create", json=too_many,
                           headers=auth(hs), timeout=30)  # fmt: skip
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    assert_frame_equal(hs.frame("contacts"), before)


def test_insert_creates_with_booleans_numbers_and_dates(hs, tmp_path):
    sent = companies(5)
    meta = write(hs, tmp_path, sent, "insert", "companies")
    assert (meta["rows_written"], meta["rows_created"]) == (5, 5)
    assert hs.stats()["batch_create"] == 1
    assert_frame_equal(held(hs, "companies", "domain", sent), sent.sort("domain"))
    text = listed(hs, "companies", COMPANY).filter(pl.col("name").str.starts_with("Created Co"))
    assert text["is_public"].to_list() == ["true", "false", "false", "true", "false"]
    assert text["founded_date"].to_list()[:2] == ["1990-01-01", "1990-01-02"]


def test_refused_records_go_to_the_error_location_with_hubspots_words_and_no_values(hs, tmp_path):
    sent = contacts(hs, existing=2, new=4, tag="ok")
    bad = sent.with_columns(
        pl.Series("email", ["x"] * 4 + ["not-an-email", "ok1@flowbridge.example"]),
        pl.Series("lifecyclestage", ["lead"] * 5 + ["prospect"]),
    ).tail(2)
    meta = write(hs, tmp_path, pl.concat([sent.head(4), bad]), "upsert")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (4, 2)
    assert hs.stats()["batch_upsert"] == 1  # HubSpot answered which failed: one call
    errors = rejected(tmp_path).sort("email")
    assert errors["email"].to_list() == ["not-an-email", "ok1@flowbridge.example"]
    assert errors["_fb_reason"].to_list() == [
        "VALIDATION_ERROR: Property values were not valid: email: INVALID_EMAIL (Email address "
        "*** is invalid)",
        "VALIDATION_ERROR: Property values were not valid: lifecyclestage: INVALID_OPTION (*** "
        "was not one of the allowed options: [subscriber, lead, marketingqualifiedlead, "
        "opportunity, customer])",
    ]
    assert_frame_equal(held(hs, "contacts", "email", sent.head(4)), sent.head(4).sort("email"))
    assert live(hs, "contacts").filter(pl.col("email") == "ok1@flowbridge.example").height == 0

    # insert: an email that is taken; a date that is not midnight UTC (HubSpot's own checks)
    taken = sent.head(1).with_columns(pl.lit("Another").alias("firstname"))
    meta = write(hs, tmp_path, taken, "insert")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (0, 1)
    existing = live(hs, "contacts").filter(pl.col("email") == sent["email"][0])["id"].item()
    reasons = rejected(tmp_path)["_fb_reason"].to_list()
    assert f"CONFLICT: Contact already exists. Existing ID: {existing}" in reasons
    noon = companies(2).with_columns(
        pl.Series("founded_date", [datetime(2001, 1, 1, 0), datetime(2001, 1, 1, 12)])
    )
    meta = write(hs, tmp_path, noon, "insert", "companies")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (1, 1)
    reason = rejected(tmp_path).filter(pl.col("name") == "Created Co 1")["_fb_reason"].item()
    assert reason == ("VALIDATION_ERROR: Property values were not valid: founded_date: "
                      "INVALID_DATE (*** is at 12:0:0.0 UTC, not midnight!)")  # fmt: skip
    for row in rejected(tmp_path).iter_rows(named=True):  # no value of the record in its reason
        values = [str(v) for k, v in row.items() if not k.startswith("_fb_") and v is not None]
        assert not [v for v in values if v in row["_fb_reason"]], row


def test_the_sandbox_checks_each_input_as_hubspot_does(hs):
    inputs = [{"properties": {"firstname": "a", "favourite_color": "red"}},
              {"properties": {"firstname": "b", "hs_object_id": "1"}},
              {"properties": {"firstname": "c", "annual_income": "12,5"}},
              {"properties": {"firstname": "d", "annual_income": "12.5"}}]  # fmt: skip
    body = {"inputs": [{**one, "objectWriteTraceId": f"t{i}"} for i, one in enumerate(inputs)]}
    answer = requests.post(f"{hs.url}/crm/v3/objects/contacts/batch/create", json=body,
                           headers=auth(hs), timeout=30)  # fmt: skip
    assert answer.status_code == 207
    errors = {e["context"]["objectWriteTraceId"][0]: e for e in answer.json()["errors"]}
    codes = {t: json.loads(e["message"].split(": ", 1)[1])[0]["error"] for t, e in errors.items()}
    assert codes == {
        "t0": "PROPERTY_DOESNT_EXIST",
        "t1": "READ_ONLY_VALUE",
        "t2": "INVALID_INTEGER",
    }
    assert [r["properties"]["firstname"] for r in answer.json()["results"]] == ["d"]
    assert live(hs, "contacts").filter(pl.col("firstname").is_in(["a", "b", "c"])).height == 0


def test_a_call_refused_whole_is_sent_again_in_halves(hs, tmp_path):
    """Two records with one email in one call: HubSpot refuses the call (duplicate ids),
    applying nothing; the halves go through, and the later record's values are held."""
    sent = contacts(hs, existing=0, new=10, tag="dup")
    sent = sent.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("new2@flowbridge.example"))
        .otherwise(pl.col("email")).alias("email")
    )  # fmt: skip
    meta = write(hs, tmp_path, sent, "upsert")
    assert (meta["rows_written"], meta["rows_created"], meta["rows_refused_by_destination"]) == (
        10, 9, 0)  # fmt: skip
    assert hs.stats()["batch_upsert"] == 3  # the refused call, then its two halves
    kept = live(hs, "contacts").filter(pl.col("email") == "new2@flowbridge.example")
    assert kept["firstname"].to_list() == ["First7 dup"]


def test_fields_hubspot_cannot_write_fail_the_run_before_any_write(hs, tmp_path):
    sent = contacts(hs, existing=3, new=0, tag="x")
    with pytest.raises(ConnectorError, match="has no property 'fristname'.*'firstname'"):
        write(hs, tmp_path, sent.rename({"firstname": "fristname"}), "upsert")
    stamped = sent.with_columns(pl.lit(datetime(2024, 1, 1)).alias("hs_lastmodifieddate"))
    with pytest.raises(ConnectorError, match="contacts.hs_lastmodifieddate is read-only"):
        write(hs, tmp_path, stamped, "upsert")
    won = deals(3, "x").with_columns(pl.lit(True).alias("hs_is_closed_won"))
    with pytest.raises(ConnectorError, match="deals.hs_is_closed_won is read-only"):
        write(hs, tmp_path, won, "upsert", "deals", "external_id")
    with pytest.raises(ConnectorError, match="deals.dealname does not require unique values"):
        write(hs, tmp_path, deals(3, "x"), "upsert", "deals", "dealname")
    with pytest.raises(ConnectorError, match="needs the property email in every record"):
        write(hs, tmp_path, sent.drop("email"), "upsert")
    assert hs.stats().get("batch_upsert", 0) == 0


def test_a_rate_limit_mid_create_is_waited_out_and_nothing_is_created_twice(hs, tmp_path):
    base = live(hs, "companies").height
    hs.inject("429", count=1, path_contains="/batch/create", after=1, retry_after=0.1)
    meta = write(hs, tmp_path, companies(150), "insert", "companies")
    assert (meta["rows_written"], meta["rows_created"]) == (150, 150)
    assert (hs.stats()["fault_429"], hs.stats()["batch_create"]) == (1, 2)  # 2 calls answered
    assert hs.pending_faults() == []
    assert live(hs, "companies").height == base + 150
    assert live(hs, "companies")["domain"].is_duplicated().sum() == 0


def test_a_5xx_on_batch_create_is_not_repeated_but_on_batch_upsert_it_is(hs, tmp_path):
    base = live(hs, "companies").height
    hs.inject("503", count=1, path_contains="/batch/create", after=1)
    with pytest.raises(ConnectorError, match="answered 503.*not repeated: the POST is not "
                       "idempotent and may have been applied"):  # fmt: skip
        write(hs, tmp_path, companies(150), "insert", "companies")
    assert (hs.stats()["batch_create"], hs.stats()["fault_503"]) == (1, 1)  # sent once each
    assert live(hs, "companies").height == base + 100  # the first call's records, once each

    hs.inject("503", count=1, path_contains="/batch/upsert", after=1, retry_after=0.1)
    sent = contacts(hs, existing=100, new=50, tag="retried")
    meta = write(hs, tmp_path, sent, "upsert")
    assert (meta["rows_written"], meta["rows_created"]) == (150, 50)
    assert (hs.stats()["batch_upsert"], hs.stats()["fault_503"]) == (2, 2)  # repeated once
    assert hs.pending_faults() == []
    assert_frame_equal(held(hs, "contacts", "email", sent), sent.sort("email"))


def test_the_vendors_python_client_writes_to_the_sandbox(hs):
    hubspot = pytest.importorskip("hubspot")
    from hubspot.crm.contacts import (
        BatchInputSimplePublicObjectBatchInputForCreate,
        BatchInputSimplePublicObjectBatchInputUpsert,
        SimplePublicObjectBatchInputForCreate,
        SimplePublicObjectBatchInputUpsert,
    )
    from hubspot.crm.contacts.exceptions import ApiException

    client = hubspot.HubSpot(access_token=hs.access_token, host=hs.url)
    existing = live(hs, "contacts")["email"][0]
    upsert = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        SimplePublicObjectBatchInputUpsert(id_property="email", id=email,
                                           properties={"firstname": "Sdk"})
        for email in (existing, "sdk@flowbridge.example")
    ])  # fmt: skip
    answer = client.crm.contacts.batch_api.upsert(upsert)
    assert answer.status == "COMPLETE"
    assert {r.properties["email"]: r.new for r in answer.results} == {
        existing: False, "sdk@flowbridge.example": True}  # fmt: skip
    assert live(hs, "contacts").filter(pl.col("firstname") == "Sdk").height == 2

    def create(*inputs):
        batch = BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            SimplePublicObjectBatchInputForCreate(associations=[], **i) for i in inputs])  # fmt: skip
        return client.crm.contacts.batch_api.create(batch)

    # with an objectWriteTraceId on every input: 207, the refused input named by its trace id
    partial = create({"properties": {"email": "a@flowbridge.example"}, "object_write_trace_id": "a"},
                     {"properties": {"email": "b@", "firstname": "B"}, "object_write_trace_id": "b"})  # fmt: skip
    assert [r.properties["email"] for r in partial.results] == ["a@flowbridge.example"]
    assert partial.num_errors == 1 and partial.errors[0].context["objectWriteTraceId"] == ["b"]
    assert partial.errors[0].category == "VALIDATION_ERROR"
    # without: the first refused input fails the whole call, and nothing is applied
    before = hs.frame("contacts").height
    with pytest.raises(ApiException) as refused:
        create({"properties": {"email": "c@flowbridge.example"}}, {"properties": {"email": "d@"}})
    assert refused.value.status == 400 and hs.frame("contacts").height == before


def test_salesforce_contacts_to_hubspot_example_flow(sf, hs, tmp_path, instance):
    """The example flow: Salesforce Contacts, emails lower-cased and checked, upserted into
    HubSpot contacts by email; a re-run changes nothing."""
    project = copy_project(tmp_path)
    result = run_flow(project, instance, FLOW)
    assert result.success
    source = (
        sf.frame("Contact")
        .filter(~pl.col("IsDeleted"))
        .with_columns(pl.col("Email").str.to_lowercase())
    )
    valid = source.filter(pl.col("Email").str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))
    emails = valid["Email"].unique()
    meta = materialization(result, FLOW, "records")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (valid.height, 0)
    assert meta["rows_created"] == emails.len() > 1000
    bad = Lake(project.lake_dir).scan(f"{FLOW}__rejected").collect()
    assert bad.height == source.height - valid.height > 0

    written = live(hs, "contacts").filter(pl.col("email").is_in(emails.implode()))
    assert written.height == emails.len()  # one contact per email
    once = valid.filter(~pl.col("Email").is_duplicated()).select(
        email="Email", firstname="FirstName", lastname="LastName", phone="Phone",
        date_of_birth="Birthdate",
    )  # fmt: skip
    assert_frame_equal(
        written.filter(pl.col("email").is_in(once["email"].implode())).select(once.columns)
        .sort("email"), once.sort("email"),
    )  # fmt: skip

    before = hs.frame("contacts").drop(STAMPS)
    again = run_flow(project, instance, FLOW)
    assert again.success and materialization(again, FLOW, "records")["rows_created"] == 0
    assert_frame_equal(hs.frame("contacts").drop(STAMPS), before)

"""The Salesforce connector against the sandbox: types from describe, SOQL text, paging."""

from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors.base import FieldInfo, ReadRequest
from flow_assets.connectors.errors import ConnectorError, UnknownObject
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.connectors.salesforce_soql import build_soql, soql_literal
from flow_assets.spec.models import FilterSpec
from tests.conftest import CLIENT_ID, CLIENT_SECRET


@pytest.fixture
def client(sf):
    resource = SalesforceConnection(
        login_url=sf.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, connection_name="t"
    )
    with dg.build_resources({"sf": resource}) as resources:
        yield resources.sf.open()


@pytest.mark.parametrize("sobject", ["Opportunity", "Account", "Contact"])
def test_full_read_matches_the_source_exactly(client, sf, sobject):
    schema = client.describe(sobject)
    fields = list(schema.fields)
    pages = list(client.read(ReadRequest(object=sobject, fields=fields, page_size=200)))
    got = pl.concat(pages).sort("Id")
    truth = sf.frame(sobject).filter(~pl.col("IsDeleted")).sort("Id")
    truth = truth.with_columns(pl.col(pl.Datetime).dt.cast_time_unit("us")).select(fields)
    assert_frame_equal(got, truth)
    assert all(p.height <= 200 for p in pages) and len(pages) > 1


def test_every_salesforce_type_maps_to_a_polars_dtype(client):
    types = {
        info.source_type: info.dtype
        for name in ("Opportunity", "Account", "Contact")
        for info in client.describe(name).fields.values()
    }
    assert types["currency"] == types["double"] == types["percent"] == pl.Float64
    assert types["int"] == pl.Int64
    assert types["string"] == types["picklist"] == types["email"] == types["id"] == pl.String
    assert types["date"] == pl.Date and types["datetime"] == pl.Datetime("us", "UTC")
    assert types["boolean"] == pl.Boolean


def test_incremental_read_returns_only_newer_records_in_cursor_order(client, sf):
    truth = sf.frame("Opportunity")
    since = truth["SystemModstamp"].sort()[len(truth) // 2]
    request = ReadRequest(
        object="Opportunity", fields=["Id", "SystemModstamp"], cursor_field="SystemModstamp",
        cursor_after=since,
    )  # fmt: skip
    got = pl.concat(client.read(request))
    expected = truth.filter(pl.col("SystemModstamp") > since)
    assert got.height == expected.height
    assert got["SystemModstamp"].is_sorted()
    far_future = ReadRequest(
        object="Opportunity", fields=["Id", "SystemModstamp"], cursor_field="SystemModstamp",
        cursor_after=datetime(2100, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    assert sum(p.height for p in client.read(far_future)) == 0


def test_unknown_object_suggests_the_right_one(client):
    with pytest.raises(
        UnknownObject, match="'Opportunty' is not an object.*did you mean 'Opportunity'"
    ):
        client.describe("Opportunty")


def info(kind: str, name: str = "F") -> FieldInfo:
    return FieldInfo(name=name, source_type=kind, dtype=pl.String())


def test_soql_literals_are_escaped_and_typed():
    assert soql_literal('O\'Brien \\ "x"\n', info("string")) == "'O\\'Brien \\\\ \\\"x\\\"\\n'"
    assert soql_literal(10000, info("currency")) == "10000"
    assert soql_literal(1.5, info("double")) == "1.5"
    assert soql_literal(True, info("boolean")) == "true"
    assert soql_literal("2024-03-01", info("date")) == "2024-03-01"
    assert soql_literal(date(2024, 3, 1), info("datetime")) == "2024-03-01T00:00:00.000Z"
    assert soql_literal("2024-03-01T12:00:00+02:00", info("datetime")) == "2024-03-01T10:00:00.000Z"
    with pytest.raises(ConnectorError, match="F is a currency field; compare it with a number"):
        soql_literal("ten", info("currency"))


def test_soql_for_filters_and_cursor(client):
    schema = client.describe("Opportunity")
    request = ReadRequest(
        object="Opportunity",
        fields=["Id", "Name"],
        filters=[
            FilterSpec(field="Name", operator="in", value=["A'1", "B"]),
            FilterSpec(field="Amount", operator="between", value=[1, 2.5]),
            FilterSpec(field="CloseDate", operator="is_not_null"),
        ],
        cursor_field="SystemModstamp",
        cursor_after=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert build_soql(request, schema) == (
        "SELECT Id, Name FROM Opportunity WHERE Name IN ('A\\'1', 'B') AND "
        "(Amount >= 1 AND Amount <= 2.5) AND CloseDate != null AND "
        "SystemModstamp > 2024-01-01T00:00:00.000Z ORDER BY SystemModstamp ASC"
    )


def test_quotes_in_pushed_down_values_reach_the_server_intact(client, sf):
    truth = sf.frame("Opportunity")
    name = next(n for n in truth["Name"] if "'" in n)
    request = ReadRequest(
        object="Opportunity", fields=["Id", "Name"],
        filters=[FilterSpec(field="Name", operator="equal_to", value=name)],
    )  # fmt: skip
    got = pl.concat(client.read(request))
    assert got["Name"].to_list() == truth.filter(pl.col("Name") == name)["Name"].to_list()

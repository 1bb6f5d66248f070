"""The acceptance suite every source connector passes against its own sandbox server."""

from datetime import UTC, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import ConnectorError
from tests.acceptance.google_analytics import GOOGLE_ANALYTICS
from tests.acceptance.harness import FAULTS, Harness, key_columns, open_client
from tests.acceptance.hubspot import HUBSPOT
from tests.acceptance.salesforce import SALESFORCE
from tests.acceptance.sap_odata import SAP_ODATA_V2, SAP_ODATA_V4
from tests.acceptance.servicenow import SERVICENOW
from tests.acceptance.slack import SLACK
from tests.acceptance.zendesk import ZENDESK

HARNESSES = [SALESFORCE, ZENDESK, HUBSPOT, SERVICENOW, SLACK, GOOGLE_ANALYTICS, SAP_ODATA_V2,
             SAP_ODATA_V4]  # fmt: skip


@pytest.fixture(scope="module", params=HARNESSES, ids=lambda h: h.name or h.connector)
def source(request):
    harness: Harness = request.param
    with harness.sandbox() as sandbox:
        yield harness, sandbox


def read(harness: Harness, sandbox, **request) -> pl.DataFrame:
    client = open_client(harness, sandbox)
    fields = list(harness.fields or client.describe(harness.object).fields)
    got = pl.concat(client.read(ReadRequest(object=harness.object, fields=fields,
                                            page_size=harness.page_size, **request)))  # fmt: skip
    return got.sort(key_columns(harness))


def expected(harness: Harness, sandbox, fields: list[str]) -> pl.DataFrame:
    return harness.truth(sandbox).select(fields).sort(key_columns(harness))


def test_a_valid_connection_checks_and_an_invalid_one_fails_clearly(source):
    harness, sandbox = source
    open_client(harness, sandbox).check()
    with pytest.raises(ConnectorError) as failed:
        open_client(harness, sandbox, valid=False).check()
    assert "'acceptance'" in str(failed.value)  # names the connection...
    assert "wrong-secret" not in str(failed.value)  # ...never the credential


def test_discovery_lists_objects_and_typed_fields(source):
    harness, sandbox = source
    client = open_client(harness, sandbox)
    assert harness.object in client.list_objects()
    schema = client.describe(harness.object)
    assert isinstance(schema.fields[harness.cursor_field].dtype, pl.Datetime | pl.Date)
    assert len({str(f.dtype) for f in schema.fields.values()}) > 1  # typed, not all text


def test_a_full_read_returns_the_sources_records_exactly(source):
    harness, sandbox = source
    got = read(harness, sandbox)
    assert_frame_equal(got, expected(harness, sandbox, got.columns))
    assert got.height > 2 * harness.page_size  # several pages


def test_two_full_reads_agree(source):
    harness, sandbox = source
    assert_frame_equal(read(harness, sandbox), read(harness, sandbox))


def test_an_incremental_read_returns_only_newer_records(source):
    harness, sandbox = source
    truth = harness.truth(sandbox)
    saved = truth[harness.cursor_field].sort()[truth.height // 2]
    got = read(harness, sandbox, cursor_field=harness.cursor_field, cursor_after=saved)
    newer = truth.filter(pl.col(harness.cursor_field) > saved)
    assert 0 < got.height == newer.height
    keys = key_columns(harness)
    assert_frame_equal(got.select(keys).sort(keys), newer.select(keys).sort(keys))


def test_a_cursor_in_the_future_returns_nothing(source):
    harness, sandbox = source
    future = datetime(2999, 1, 1, tzinfo=UTC)
    client = open_client(harness, sandbox)
    fields = list(harness.fields or client.describe(harness.object).fields)
    request = ReadRequest(object=harness.object, fields=fields, cursor_field=harness.cursor_field,
                          cursor_after=future, page_size=harness.page_size)  # fmt: skip
    assert sum(p.height for p in client.read(request)) == 0


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_mid_read_are_survived_with_exact_counts(source, fault):
    harness, sandbox = source
    harness.inject(sandbox, fault, 1)  # after the first page
    got = read(harness, sandbox)
    assert harness.faults_pending(sandbox) == 0  # the fault was met, and survived
    assert_frame_equal(got, expected(harness, sandbox, got.columns))

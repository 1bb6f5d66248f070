"""The acceptance suite every SaaS destination passes against its own sandbox server: records
upserted are held exactly, a re-run changes nothing, edits land, refused records reach the error
location with the vendor's code, faults mid-write are survived with exact counts, and a field
the object lacks fails the run before any write."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors.errors import ConnectorError
from tests.acceptance.hubspot_sink import HUBSPOT_SINK
from tests.acceptance.salesforce_sink import SALESFORCE_BULK_SINK, SALESFORCE_SINK
from tests.acceptance.sink_harness import FAULTS, SinkHarness, rejected, write
from tests.acceptance.zendesk_sink import ZENDESK_SINK

SINKS = [SALESFORCE_SINK, SALESFORCE_BULK_SINK, ZENDESK_SINK, HUBSPOT_SINK]


@pytest.fixture(params=SINKS, ids=lambda h: h.name or h.connector)
def sink(request):
    harness: SinkHarness = request.param
    with harness.sandbox() as sandbox:
        yield harness, sandbox


def held(harness: SinkHarness, sandbox) -> pl.DataFrame:
    return harness.held(sandbox).sort(harness.key)


def test_upserted_records_are_held_exactly_and_a_rerun_changes_nothing(sink, tmp_path):
    harness, sandbox = sink
    n = harness.batch_size + harness.batch_size // 2 + 1  # several write calls
    sent = harness.records(sandbox, n, "first")
    meta = write(harness, sandbox, tmp_path, sent)
    assert (meta["rows_written"], meta["rows_created"], meta["rows_refused_by_destination"]) == (
        n, n, 0)  # fmt: skip
    assert meta["batches"] == 2
    assert_frame_equal(held(harness, sandbox), sent.sort(harness.key))

    again = write(harness, sandbox, tmp_path, sent)
    assert (again["rows_written"], again["rows_created"]) == (n, 0)
    assert_frame_equal(held(harness, sandbox), sent.sort(harness.key))  # no duplicates


def test_edits_land_and_only_they_change(sink, tmp_path):
    harness, sandbox = sink
    first = harness.records(sandbox, 20, "first")
    write(harness, sandbox, tmp_path, first)
    edited = harness.records(sandbox, 5, "edited!")  # the same keys as the first five
    meta = write(harness, sandbox, tmp_path, edited)
    assert (meta["rows_written"], meta["rows_created"]) == (5, 0)
    expected = pl.concat([edited, first.slice(5)]).sort(harness.key)
    assert_frame_equal(held(harness, sandbox), expected)


def test_a_record_the_vendor_refuses_goes_to_the_error_location_with_its_code(sink, tmp_path):
    harness, sandbox = sink
    good = harness.records(sandbox, 3, "good")
    bad, code = harness.refused(sandbox)
    meta = write(harness, sandbox, tmp_path, pl.concat([good, bad], how="vertical_relaxed"))
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (3, 1)
    errors = rejected(tmp_path)
    assert errors.height == 1
    assert errors[harness.key].to_list() == bad[harness.key].to_list()
    assert errors["_fb_reason"][0].startswith(code)
    assert_frame_equal(held(harness, sandbox), good.sort(harness.key))


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_mid_write_are_survived_with_exact_counts(sink, tmp_path, fault):
    harness, sandbox = sink
    n = 2 * harness.batch_size + 1
    sent = harness.records(sandbox, n, "faults")
    harness.inject(sandbox, fault, 1)  # after the first write call
    meta = write(harness, sandbox, tmp_path, sent)
    assert harness.faults_pending(sandbox) == 0  # the fault was met, and survived
    assert (meta["rows_written"], meta["rows_created"]) == (n, n)
    assert_frame_equal(held(harness, sandbox), sent.sort(harness.key))


def test_a_field_the_object_lacks_fails_before_any_write(sink, tmp_path):
    harness, sandbox = sink
    sent = harness.records(sandbox, 3, "x").with_columns(pl.lit(1).alias("No_Such_Field"))
    with pytest.raises(ConnectorError, match="No_Such_Field"):
        write(harness, sandbox, tmp_path, sent)
    assert held(harness, sandbox).height == 0

"""No secret and no raw value of a masked field reaches logs, the event log or metadata."""

import logging

import dagster as dg

from tests.conftest import CLIENT_SECRET, live_opportunities, run_flow

FLOW = "salesforce_big_opportunities"


def test_secrets_and_masked_values_stay_out_of_logs_and_events(
    project, instance, sf, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    sf.inject("expire_token", count=1, path_contains="/query")  # re-authentication is logged too
    result = run_flow(project, instance, FLOW)
    assert result.success
    events = "\n".join(dg.serialize_value(e) for e in instance.all_logs(result.run_id))
    captured = capfd.readouterr()
    everything = "\n".join([events, caplog.text, captured.out, captured.err])
    assert FLOW in events  # the scan does see the run's events

    assert CLIENT_SECRET not in everything
    emails = {e for e in live_opportunities(sf)["Email__c"].drop_nulls() if len(e) > 5}
    assert emails, "the sandbox should have emails to hide"
    leaked = [e for e in emails if e in everything or e.lower() in everything]
    assert not leaked, f"{len(leaked)} raw emails in logs or events"

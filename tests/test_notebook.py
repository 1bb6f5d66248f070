"""The notebook runs headless against what the example flow loaded."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO, materialization, run_flow

NOTEBOOK = REPO / "notebooks" / "explore_opportunities.ipynb"


def test_notebook_executes(project, instance, sf, monkeypatch, tmp_path):
    result = run_flow(project, instance, "salesforce_big_opportunities")
    loaded = materialization(result, "salesforce_big_opportunities", "records")["records_loaded"]
    monkeypatch.setenv("FLOWBRIDGE_DATA_DIR", str(project.data_dir))
    monkeypatch.setenv("FLOWBRIDGE_FLOWS_DIR", str(project.flows_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs)
    assert f"{loaded:,} records in the lake" in text
    # No raw email from the source appears anywhere in the notebook's output.
    everything = nbformat.writes(notebook)
    emails = sf.frame("Opportunity")["Email__c"].drop_nulls().to_list()
    assert not [e for e in emails if e in everything]
    assert Path(NOTEBOOK).read_text().count('"outputs": []') >= 5  # committed without outputs

"""Every shipped notebook runs top to bottom on the shipped samples without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the test extras (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the test extras (nbclient)")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_error(path):
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # the investigation reached the correlation: the offsets table has one row per node
    outputs = [c for c in nb.cells if c.cell_type == "code" and "corr.offsets" in c.source]
    assert outputs and outputs[0].outputs

"""The shipped notebooks: generated from make_notebooks.py, committed with outputs, small, and they run top to bottom."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the test extras (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the test extras (nbclient)")

HERE = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", HERE / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _texts(nb) -> dict[int, str]:
    """Plain-text outputs per code cell index."""
    out = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            out[i] = "\n".join(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
                               for o in c.get("outputs", []))  # fmt: skip
    return out


def test_the_three_investigations_are_committed_as_generated_with_outputs():
    gen = _generator()
    assert sorted(gen.NOTEBOOKS) == [p.name for p in NOTEBOOKS] and len(NOTEBOOKS) == 3
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in gen.build(gen.NOTEBOOKS[path.name]).cells], (
            f"{path.name} differs from make_notebooks.py: run python notebooks/make_notebooks.py")
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs for c in code), f"{path.name}: committed without outputs"
        assert not any(o.output_type == "error" for c in code for o in c.outputs)
        assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), f"{path.name}: no figure"
        assert path.stat().st_size < 1_000_000


def test_notebooks_use_the_defining_modules_not_the_package_root():
    for path in NOTEBOOKS:
        src = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "import pcaptools\n" not in src and "pcaptools." not in src.replace("from pcaptools.", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path):
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "\n".join(_texts(nb).values())
    if path.name == "where_did_my_packet_go.ipynb":
        assert "same backends            True" in text  # paths agree with the lab's truth
    elif path.name == "why_is_the_client_ip_lost.ipynb":
        checked = next(t for t in _texts(nb).values() if "agree with truth" in t)
        n = [int(line.split()[-1]) for line in checked.splitlines() if line.startswith(("connections checked", "agree with truth"))]
        assert n[0] > 0 and n[0] == n[1]  # the source the backend saw, per connection, as conntrack recorded it
    elif path.name == "what_does_the_overlay_cost.ipynb":
        assert "vxlan.calico" in text and "encapsulation per tunnelled packet" in text

"""The Python API: lazy package root, names that never shadow modules, full signatures, a light lab traffic module."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import pcaptools

ROOT = Path(__file__).resolve().parents[1]
EYE = ROOT / "tests" / "data" / "own" / "eth.pcap"


def _modules_after(code: str) -> set[str]:
    """Names in sys.modules after running ``code`` in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout  # fmt: skip
    return set(out.split())


def test_import_pcaptools_loads_neither_pandas_nor_numba() -> None:
    mods = _modules_after("import pcaptools")
    assert not {"pandas", "numba", "numpy", "matplotlib", "pyarrow", "scapy"} & mods


def test_lab_traffic_module_runs_without_pandas_or_numba() -> None:
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcaptools.lab.traffic", "--help"],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert res.returncode == 0, res.stderr
    imported = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "pcaptools.lab" in imported  # the package was imported; traffic itself runs as __main__
    assert not {"pandas", "numba", "numpy"} & imported


def test_all_names_resolve_and_none_is_a_function_over_a_module() -> None:
    for name in pcaptools.__all__:
        obj = getattr(pcaptools, name)
        assert obj is not None
    # the modules stay modules, so their attributes are reachable
    assert pcaptools.correlate.CaptureSet is pcaptools.CaptureSet
    assert inspect.ismodule(pcaptools.flows) and inspect.ismodule(pcaptools.compare)
    assert pcaptools.compare.Comparison is pcaptools.Comparison
    import pcaptools.correlate.merge as merge_module
    import pcaptools.k8s.discover as discover

    assert pcaptools.correlate.merge is merge_module
    assert pcaptools.merge_captures is discover.merge_captures  # a CaptureSet or inputs (memory= streams), not the module
    assert pcaptools.correlate.write_merged is merge_module.merge  # a CaptureSet only: not named as the public one
    assert not hasattr(pcaptools.correlate, "merge_captures")


def test_public_functions_have_keyword_only_options_and_no_catch_all() -> None:
    for name in ("read_packets", "flow_table", "read_flows", "correlate_captures", "compare_captures", "path_table",
                 "merge_captures", "summarize"):  # fmt: skip
        sig = inspect.signature(getattr(pcaptools, name))
        kinds = {p.kind for p in sig.parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, name
        assert inspect.Parameter.KEYWORD_ONLY in kinds, name


def test_old_call_style_still_works_on_modules() -> None:
    pk = pcaptools.read_packets(str(EYE))
    old = pcaptools.flows(pk)
    new = pcaptools.flow_table(pk)
    assert len(old) == len(new) > 0
    assert list(old["community_id"]) == list(new["community_id"])


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        pcaptools.no_such_thing  # noqa: B018

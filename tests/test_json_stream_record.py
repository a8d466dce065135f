"""`paths --json` and `why --json` write a connection's retransmission timeline from its columns, a piece of
TIMELINE_PIECE sightings at a time (render.records.write_document of a diagnose.Timeline): the same bytes as the
standard library's text of the object form, and a large timeline reaches the output in many writes, none holding more
than a piece."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pcaptools.k8s.diagnose import Timeline
from pcaptools.k8s.discover import manifest_drops
from pcaptools.k8s.paths_stream import diagnose_bounded
from pcaptools.render import records
from pcaptools.render.records import dumps, path_records, paths_document, write_document

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"


def _stdlib(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)


def _diagnosed(src: Path):  # noqa: ANN202 - (PathSet, Diagnosis)
    return diagnose_bounded([str(src)], capture_drops=manifest_drops([str(src)]))


def _streamed(head: dict, key: str, items) -> tuple[str, list[str]]:  # noqa: ANN001 - an iterator of records
    writes: list[str] = []
    write_document(head, key, items, writes.append)
    return "".join(writes), writes


@pytest.mark.parametrize("piece", [3, 4096])
@pytest.mark.parametrize("name", ["calico-vxlan", "vpc", "generated"])
def test_timelines_written_from_columns_are_the_standard_librarys_text_of_their_objects(name, piece, generated, monkeypatch):
    ps, d = _diagnosed(generated if name == "generated" else SAMPLES / name)
    monkeypatch.setattr(records, "TIMELINE_PIECE", piece)  # 3: pieces end inside every larger timeline
    why = d.to_dict()
    text, _ = _streamed(d.head(), "connections", d.records(columns=True))
    assert text == _stdlib(why) == dumps(why)
    paths = paths_document(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d)
    head = {"schema_version": 1, "command": "paths", "connections": len(ps.paths), "paths": []}
    text, _ = _streamed(head, "paths", path_records(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d, columns=True))
    assert text == _stdlib(paths) == dumps(paths)
    assert ": null" in text  # absent values (a port-less hop's port, a NAT step without rules) stay null
    if name == "generated":  # retransmissions and losses, and connections with none
        timelines = [c["timeline"] for c in why["connections"]]
        attempts = [a for t in timelines for a in t]
        assert {a["reached"] for a in attempts} == {True, False} and max(a["attempt"] for a in attempts) > 1
        assert any(len(t) == 0 for t in timelines) and any(len(t) > 10 for t in timelines)
        assert any(c["losses"] for c in why["connections"]) and any(c["status"] == "ok" for c in why["connections"])


def test_a_large_timeline_is_written_in_pieces_of_at_most_timeline_piece_sightings(generated, monkeypatch):
    _, d = _diagnosed(generated)
    sizes = {c: int(d.connection_record(c, columns=True)["timeline"].cut[-1]) for c in d.connections["connection"].tolist()}
    big = max(sizes, key=sizes.__getitem__)
    assert sizes[big] > 100
    monkeypatch.setattr(records, "TIMELINE_PIECE", 16)
    one = [r for r in d.records(columns=True) if r["connection"] == big]
    text, writes = _streamed(d.head(), "connections", iter(one))
    assert json.loads(text)["connections"] == [r for r in d.to_dict()["connections"] if r["connection"] == big]
    per_write = [w.count('"ts_ns"') for w in writes]
    assert sum(per_write) == sizes[big] and max(per_write) <= 16 and len(writes) >= sizes[big] // 16


def test_a_timeline_with_values_the_fast_path_does_not_write_is_left_to_the_standard_library(generated):
    _, d = _diagnosed(generated)
    c = next(c for c in d.connections["connection"].tolist() if len(d.connection_record(c, columns=True)["timeline"]) > 2)
    tl = d.connection_record(c, columns=True)["timeline"]
    point = np.array(tl.point, dtype=object)
    point[1] = None  # a sighting without a point name: json.dumps' text for that piece
    odd = Timeline(tl.direction, tl.packet, tl.attempt, tl.reached, tl.cut, point, tl.ts_ns)
    doc = {"timeline": odd, "empty": Timeline(*(np.zeros(0, object),) * 4, np.zeros(1, np.int64), np.zeros(0, object),
                                              np.zeros(0, np.int64))}  # fmt: skip
    want = _stdlib({"timeline": odd.objects(), "empty": []})
    assert dumps(doc) == want and '"point": null' in want
    assert _streamed({"items": []}, "items", iter([doc]))[0] == _stdlib({"items": [{"timeline": odd.objects(), "empty": []}]})

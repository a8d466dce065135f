"""The diagnosis computed column-wise and its ``--json`` text: a connection's retransmission timeline is written from
its columns (render.records) and reads exactly as the standard library writes the same objects; a retried SYN of
crafted captures is one packet with two attempts, each seen at both capture points."""

from __future__ import annotations

import json

from pcaptools.k8s.discover import manifest_drops
from pcaptools.k8s.paths_stream import diagnose_bounded
from pcaptools.render.records import dumps, paths_document
from tests.test_why_stream import _crafted


def _stdlib(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)


def test_timelines_written_from_columns_read_as_the_standard_librarys_text_of_their_objects(generated):
    ps, d = diagnose_bounded(generated, capture_drops=manifest_drops([generated]))
    why = d.to_dict()
    attempts = [a for c in why["connections"] for a in c["timeline"]]
    assert len(attempts) > 100 and {a["reached"] for a in attempts} == {True, False}  # retransmissions and losses
    assert sum(len(a["sightings"]) for a in attempts) > len(attempts)
    assert dumps(why) == _stdlib(why)
    paths = paths_document(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d)
    assert dumps(paths) == _stdlib(paths)


def test_a_retried_syn_is_one_packet_with_two_attempts_each_seen_at_both_points(tmp_path):
    ps, d = diagnose_bounded([], points=_crafted(tmp_path))
    doc = d.to_dict()
    first = next(c for c in doc["connections"] if c["client"]["port"] == 41234 and c["status"] == "ok" and c["timeline"])
    syn = [a for a in first["timeline"] if a["packet"].startswith("SYN ")]
    assert [(a["direction"], a["attempt"], a["reached"]) for a in syn] == [("forward", 1, True), ("forward", 2, True)]
    assert len({a["packet"] for a in syn}) == 1  # one packet (same flags, sequence number and size), sent twice
    for a in syn:
        assert [s["point"] for s in a["sightings"]] == ["node-1:eth0", "node-2:eth0"]
        assert a["sightings"][1]["ts_ns"] - a["sightings"][0]["ts_ns"] > 0  # 0.3 ms later at the server side
    assert syn[1]["sightings"][0]["ts_ns"] - syn[0]["sightings"][0]["ts_ns"] > 900_000_000  # retried after 1 s
    assert dumps(doc) == _stdlib(doc)

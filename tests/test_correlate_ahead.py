"""What the one-window run computes early (while the clocks are estimated) and how it writes hops change nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pcaptools.correlate.api import DEFAULT_WINDOW_NS, correlate, matcher, packet_fingerprints
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.stream import write_hops
from pcaptools.correlate.summary import totals
from pcaptools.correlate.windows import AHEAD, Categories, rows_from

ROOT = Path(__file__).resolve().parent.parent
SETS = [ROOT / "sample_pcaps" / "calico-vxlan", ROOT / "sample_pcaps" / "vpc"]


@pytest.fixture(scope="module", params=SETS, ids=lambda p: p.name)
def loaded(request):
    cs = CaptureSet.load(request.param)
    return cs, correlate(cs)


def _rows(cs: CaptureSet, corr, cats: Categories) -> dict[str, np.ndarray]:
    pk = cs.packets
    pid = pk["point_id"].to_numpy(np.int64)
    return rows_from(pk, packet_fingerprints(pk), corr.row_ts_corrected, np.arange(len(pk), dtype=np.int64), pid, cats)


def _run(cs: CaptureSet, corr, *, ahead: bool, horizon: int | None = None):
    """Hops and summary of the set's rows matched in one window, or in two cut at ``horizon``."""
    m = matcher(cs.points, DEFAULT_WINDOW_NS, Categories())
    rows = _rows(cs, corr, m.cats)
    if horizon is None:
        parts = [rows]
    else:
        early = rows["tc"] < horizon
        parts = [{c: v[early] for c, v in rows.items()}, {c: v[~early] for c, v in rows.items()}]
    hops = []
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        hops.append(m.step(m.ahead(part) if ahead else part, None if last else horizon).hops)
    t = totals(m)
    return pd.concat(hops, ignore_index=True), t


@pytest.mark.parametrize("windows", [1, 2])
def test_rows_matched_with_their_flows_and_slots_computed_ahead_give_the_same_hops_and_summary(loaded, windows) -> None:
    cs, corr = loaded
    tc = corr.row_ts_corrected[corr.row_journey >= 0]
    horizon = None if windows == 1 else int(np.median(tc))  # journeys carried into the second window
    plain_hops, plain = _run(cs, corr, ahead=False, horizon=horizon)
    early_hops, early = _run(cs, corr, ahead=True, horizon=horizon)
    assert len(plain_hops) == int((corr.row_journey >= 0).sum()) > 0
    pd.testing.assert_frame_equal(early_hops, plain_hops)
    pd.testing.assert_frame_equal(early.hop_latency, plain.hop_latency)
    pd.testing.assert_frame_equal(early.losses, plain.losses)
    assert (early.matched, early.unmatched, early.journeys, early.ambiguous) == (plain.matched, plain.unmatched, plain.journeys, plain.ambiguous)
    if windows == 1:  # the in-memory run's own hops
        pd.testing.assert_frame_equal(plain_hops, corr.hops)


def test_what_is_computed_ahead_is_never_carried_to_the_next_window(loaded) -> None:
    cs, corr = loaded
    m = matcher(cs.points, DEFAULT_WINDOW_NS, Categories())
    rows = m.ahead(_rows(cs, corr, m.cats))
    horizon = int(np.median(rows["tc"]))
    early = rows["tc"] < horizon
    m.step({c: v[early] for c, v in rows.items()}, horizon)
    assert m.carry and m.carry["fp"].shape[0] > 0  # journeys open at the horizon
    assert not set(AHEAD) & set(m.carry)


def test_hops_file_reads_back_as_the_hops_table_its_numbers_declared_non_null(loaded, tmp_path) -> None:
    _, corr = loaded
    write_hops([corr.hops], tmp_path / "hops.parquet")
    back = pd.read_parquet(tmp_path / "hops.parquet")
    pd.testing.assert_frame_equal(back, _as_text(corr.hops))  # categories are written as text, in their order
    schema = pq.read_schema(tmp_path / "hops.parquet")
    categories = {c for c in corr.hops.columns if isinstance(corr.hops[c].dtype, pd.CategoricalDtype)}
    assert {f.name for f in schema if f.nullable} == categories
    assert corr.hops["outer_src"].isna().any()  # untunnelled rows: a missing category survives the codes handed over
    assert back["outer_src"].isna().sum() == corr.hops["outer_src"].isna().sum()


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the categories of its category columns as text (what Parquet's string dictionaries read back as)."""
    out = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype) and len(df[c].cat.categories):  # none: read back as they were
            out[c] = pd.Categorical.from_codes(df[c].cat.codes, categories=pd.Index(df[c].cat.categories.astype(str)))
    return out


def test_in_memory_correlation_makes_its_summary_when_first_read_and_it_is_the_eager_one():
    """Without a writer (``correlate``, and every command building paths on it), the spine is kept only when a summary
    field is first read: the same latency, losses, counts and notes as the run that keeps it while the hops are written."""
    import pickle
    from pathlib import Path

    import pandas as pd

    from pcaptools.correlate.api import Correlation, correlate, correlate_window
    from pcaptools.correlate.capture_set import CaptureSet

    cs = CaptureSet.load(Path(__file__).resolve().parents[1] / "sample_pcaps" / "calico-vxlan")
    lazy, eager = correlate(cs), correlate_window(cs, on_part=lambda part: None)
    assert callable(lazy.__dict__["_losses_value"]) and not callable(eager.__dict__["_losses_value"])
    assert lazy.notes == eager.notes and lazy.multi_point_journeys == eager.multi_point_journeys > 0
    pd.testing.assert_frame_equal(lazy.hops, eager.hops)
    pd.testing.assert_frame_equal(lazy.hop_latency, eager.hop_latency)
    pd.testing.assert_frame_equal(lazy.losses, eager.losses)
    pd.testing.assert_series_equal(lazy.seen_at_point, eager.seen_at_point)
    assert (lazy.matched, lazy.unmatched, lazy.ambiguous) == (eager.matched, eager.unmatched, eager.ambiguous)
    assert lazy.to_dict() == eager.to_dict()
    again = pickle.loads(pickle.dumps(correlate(cs)))  # pickled with its summary made (a function does not pickle)
    assert again.to_dict() == eager.to_dict()
    bare = Correlation(hops=eager.hops, offsets=eager.offsets, hop_latency=eager.hop_latency, losses=eager.losses,
                       matched={}, unmatched={}, journeys=0, ambiguous=0, window_ns=1)  # fmt: skip
    assert bare.seen_at_point is None and bare.multi_point_journeys == 0  # defaults, as plain fields had them


def test_one_window_part_hands_the_writer_the_category_codes_it_gathered(loaded) -> None:
    """The one-window run's part keeps its category columns' int32 codes for the Parquet writer: the columns' own
    codes, and the Arrow table made from them is the one made by widening pandas' narrower codes."""
    from pcaptools.correlate.api import correlate_window
    from pcaptools.correlate.stream import _arrow

    cs, corr = loaded
    parts = []
    correlate_window(cs, on_part=parts.append)
    (part,) = parts
    h = part.hops
    categories = {c for c in h.columns if isinstance(h[c].dtype, pd.CategoricalDtype)}
    assert set(part.codes) == categories
    for c, v in part.codes.items():
        assert v.dtype == np.int32
        np.testing.assert_array_equal(v, h[c].cat.codes.to_numpy())
    assert _arrow(h, part.codes).equals(_arrow(h))
    pd.testing.assert_frame_equal(h, corr.hops)


def test_windows_of_a_stream_keep_no_codes_beside_their_hops(loaded) -> None:
    """A streamed run's windows wait for the writer: their parts hold the hops only (no second copy of the codes)."""
    cs, corr = loaded
    m = matcher(cs.points, DEFAULT_WINDOW_NS, Categories())
    rows = _rows(cs, corr, m.cats)
    horizon = int(np.median(rows["tc"]))
    early = rows["tc"] < horizon
    parts = []
    m.step({c: v[early] for c, v in rows.items()}, horizon, on_part=parts.append)
    m.step({c: v[~early] for c, v in rows.items()}, None, on_part=parts.append)
    assert len(parts) == 2 and all(len(p.hops) for p in parts)
    assert all(p.codes == {} for p in parts)

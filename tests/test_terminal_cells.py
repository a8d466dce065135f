"""The listing's shortcuts past rich (render.terminal: _cells, _fold, _cell_measure) give rich's own answers."""

from __future__ import annotations

import random

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.text import Text

from pcaptools.render import terminal

_ALPHABET = "ab→ :-./0123456789xyzµ▸é   "
_OTHER = "界😀\u200d\t"  # wide, emoji, zero-width joiner, tab: measured by rich


def _texts(n: int, alphabet: str, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(n)]


def test_cells_is_richs_cell_length_for_narrow_and_other_text():
    for s in _texts(3000, _ALPHABET) + _texts(1000, _ALPHABET + _OTHER, seed=2):
        assert terminal._cells(s) == cell_len(s), s


def test_fold_is_richs_left_justified_folding_wrap_of_a_table_cell():
    con = Console(width=80)
    rng = random.Random(3)
    for s in _texts(5000, _ALPHABET):
        if not s:
            continue
        w = rng.randint(1, 40)
        ref = [set_cell_size(x.plain, w) for x in Text(s).wrap(con, w, justify="left", overflow="fold", no_wrap=False)]
        assert terminal._fold(s, w) == ref, (s, w)


def test_cell_measure_is_longest_word_and_line_as_rich_measures_them():
    terminal._cells("x")  # the narrow set is made on first use
    for s in _texts(2000, _ALPHABET + "\n") + _texts(500, _ALPHABET + _OTHER, seed=4):
        lines = s.splitlines()
        line = max((cell_len(x) for x in lines), default=0)
        words = s.split()
        assert terminal._cell_measure(s) == ((max(cell_len(w) for w in words) if words else line), line), s

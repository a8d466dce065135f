"""``why``'s text written straight to a piped console is, character for character, what rich prints line by line."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pcaptools.render.terminal import _Lines, safe, text

LINES = [
    ("", "", False, ""),
    ("12 connections: 3 ok, 9 failed", "bold", False, ""),
    ("#4 tcp default/client-0 10.0.0.1:5 → default/web 10.1.0.1:80  ", "", False, "failed"),
    ("  forward: policy-drop (0.75) 2 packet(s), last seen node-2:eth0, first missed node-2:cali-backend0", "", False, ""),
    ("    " + "ACK seen on eth0@node-1 4 time(s), never on eth0@node-2 " * 4, "dim", True, ""),
    ("  pod 名前空間 ünïcödé → 服务 " * 3, "", False, ""),  # wide characters: cells, not code points
    ("evil\x1b[31m red\ttab\nnewline", "", False, ""),  # escaped, never passed through
    ("x" * 40, "", False, ""),  # exactly the width
    ("y" * 41, "", False, ""),  # one past it: wrapped by rich
]


@pytest.mark.parametrize("width", [40, 160])
def test_lines_written_straight_are_the_characters_rich_prints(width: int) -> None:
    straight, rich_out = io.StringIO(), io.StringIO()
    lines = _Lines(Console(file=straight, width=width, markup=False, highlight=False, emoji=False, soft_wrap=False))
    ref = Console(file=rich_out, width=width, markup=False, highlight=False, emoji=False, soft_wrap=False)
    assert lines.plain  # a StringIO is no terminal: no colour
    for line, style, soft, tail in LINES:
        t = text(line, style=style)
        t.append(tail, style="bold red")
        lines(t if tail else safe(line), style, soft_wrap=soft)  # as print_why hands them over
        ref.print(t, soft_wrap=soft)  # as it printed them before
    lines.flush()
    assert straight.getvalue() == rich_out.getvalue()
    assert "\x1b" not in straight.getvalue() and "\\x1b" in straight.getvalue()


def test_a_colour_console_is_printed_by_rich() -> None:
    out = io.StringIO()
    lines = _Lines(Console(file=out, force_terminal=True, color_system="standard", width=80))
    lines("12 connections", "bold")
    assert not lines.plain and "\x1b[1m" in out.getvalue()

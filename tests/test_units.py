"""Byte quantities for --memory: Kubernetes-style suffixes accepted, anything else refused with the accepted forms."""

from __future__ import annotations

import pytest

from pcaptools.units import MIN_MEMORY, format_bytes, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512MiB", 512 << 20), ("2GiB", 2 << 30), ("2Gi", 2 << 30), ("1.5G", 1_500_000_000), ("1.5GiB", 3 << 29),
     ("100MB", 100_000_000), ("1048576", 1 << 20), ("64kib", 64 << 10), (" 3 Mi ", 3 << 20)],
)  # fmt: skip
def test_binary_and_decimal_suffixes_give_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1G", "nan", "inf", "1e9", "2 GiBs", "G", "1..5G", "0x10M"])
def test_nonsense_is_refused_naming_the_accepted_forms(text):
    with pytest.raises(ValueError, match="expected a size such as 512MiB, 2GiB or 1.5G"):
        parse_bytes(text)


@pytest.mark.parametrize("text", ["0", "0GiB", "1MiB"])
def test_sizes_below_the_minimum_are_refused_with_the_minimum(text):
    with pytest.raises(ValueError, match="at least 16 MiB"):
        parse_bytes(text, minimum=MIN_MEMORY)


def test_format_bytes_picks_the_largest_binary_unit():
    assert [format_bytes(n) for n in (512, 2 << 30, 512 << 20)] == ["512 B", "2 GiB", "512 MiB"]

"""LINKTYPE numbers (tcpdump.org/linktypes.html) and their DLT names, as tcpdump and capinfos print them."""

from __future__ import annotations

LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL",
    1: "EN10MB",
    101: "RAW",
    105: "IEEE802_11",
    108: "LOOP",
    113: "LINUX_SLL",
    127: "IEEE802_11_RADIO",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}


def linktype_name(linktype: int) -> str:
    """DLT name of a link type number, or ``LINKTYPE_<n>`` for one pcaptools has no name for."""
    return LINKTYPE_NAMES.get(int(linktype), f"LINKTYPE_{int(linktype)}")

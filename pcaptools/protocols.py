"""IP protocol names as every output writes them (imports nothing, so the CLI's startup stays light)."""

from __future__ import annotations

PROTO_NAMES: dict[int, str] = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}
"""IP protocol numbers with a name (others are written as their number)."""

"""IP in IP (RFC 2003, IP protocol 4) and IPv6 in IPv4/IPv6 (RFC 4213/2473, protocol 41).

No header of its own: the inner IP header follows the outer one. The registry names the edges
(``ip.proto==4`` -> ``ipip`` then IPv4, ``ip.proto==41`` -> ``ip6ip`` then IPv6).
"""

from __future__ import annotations

NEXT_ETHERTYPE = {"ipip": 0x0800, "ip6ip": 0x86DD}
"""The inner header each tunnel announces, as an ethertype key for the registry."""

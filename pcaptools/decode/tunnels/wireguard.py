"""WireGuard (UDP 51820/51821 by default): recognised, not decrypted.

The message type (1 initiation, 2 response, 3 cookie, 4 data) is the first byte; the inner packet
is encrypted, so the row keeps the carrier (outer IP/UDP) in the main columns, ``tunnel`` says
``wireguard`` and ``tunnel_depth`` counts it.
"""

from __future__ import annotations

OPAQUE = True

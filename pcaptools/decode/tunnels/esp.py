"""ESP (RFC 4303, IP protocol 50): recognised, not decrypted.

SPI 0:4, sequence 4:8, then ciphertext. Like WireGuard, the carrier stays in the main columns,
``tunnel`` says ``esp`` and ``tunnel_depth`` counts it.
"""

from __future__ import annotations

OPAQUE = True

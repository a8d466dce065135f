"""pcaptools: decode, correlate and compare Kubernetes node captures, columnar and fast."""

from __future__ import annotations

__version__ = "0.1.0"

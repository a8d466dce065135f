"""The reader's output contract: a batch of capture records as columnar numpy arrays.

Readers (pcap, pcapng) produce :class:`RecordBatch`; the decoder consumes it. Nothing here knows
any protocol above the link layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class InterfaceStats:
    """Counters of a pcapng Interface Statistics Block (the last one for its interface): None where absent.

    ``ifrecv`` packets the interface received, ``ifdrop`` dropped by the interface for lack of resources,
    ``filteraccept`` accepted by the capture filter, ``osdrop`` dropped by the OS (capture buffer full),
    ``usrdeliv`` delivered to the capturing program; all since the capture started.
    """

    ifrecv: int | None = None
    ifdrop: int | None = None
    filteraccept: int | None = None
    osdrop: int | None = None
    usrdeliv: int | None = None

    def dropped(self) -> int | None:
        """Packets the capture reports lost (interface + OS drops; else accepted minus delivered), None if it says nothing."""
        if self.ifdrop is not None or self.osdrop is not None:
            return (self.ifdrop or 0) + (self.osdrop or 0)
        if self.filteraccept is not None and self.usrdeliv is not None:
            return max(self.filteraccept - self.usrdeliv, 0)
        return None


@dataclass(frozen=True)
class Interface:
    """One capture interface (a pcapng IDB; classic pcap has exactly one).

    ``description`` keeps what capture tools put there verbatim (Kubernetes tools write
    ``k8s.node=…;k8s.podName=…``), so later layers can name capture points.
    """

    id: int
    linktype: int
    snaplen: int
    name: str = ""
    description: str = ""
    hardware: str = ""  # if_hardware (e.g. a NIC model or a veth's peer), verbatim
    tsresol_ns: float = 1000.0  # nanoseconds per timestamp unit as written in the file
    tsoffset_s: int = 0
    section: int = 0
    stats: InterfaceStats | None = None  # pcapng Interface Statistics Block counters, when the file has one


@dataclass
class RecordBatch:
    """Records of one capture file (or one chunk of it), one array element per record.

    ``data`` is the byte buffer the offsets point into (a memory map of the file when it is
    uncompressed). ``record`` is the record's 0-based number among *all* records of the file, so a
    chunk or a batch with skips still names every record uniquely.
    """

    path: str
    format: str  # "pcap" | "pcapng"
    data: np.ndarray  # uint8
    offset: np.ndarray  # int64, start of the packet bytes in ``data``
    caplen: np.ndarray  # uint32, bytes captured
    wirelen: np.ndarray  # uint32, original length on the wire
    ts_ns: np.ndarray  # int64, nanoseconds since the epoch
    iface: np.ndarray  # uint32, interface id (index into ``interfaces``)
    linktype: np.ndarray  # uint16, DLT/LINKTYPE number of the record's interface
    record: np.ndarray  # int64, 0-based record number in the file
    flags: np.ndarray | None = None  # uint32 pcapng epb_flags (direction in bits 0-1), else None
    interfaces: list[Interface] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    records_total: int = 0  # records seen in the file/chunk: len(self) + sum(skipped.values())
    data_base: int = 0  # byte offset of data[0] in the (decompressed) file; 0 unless streamed in windows
    stopped_at: dict | None = None  # where reading gave up: {reason, offset, record, bytes_left}, else None
    notes: list[str] = field(default_factory=list)  # one sentence per damage that was skipped or stopped at

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def packet(self, i: int) -> bytes:
        """Captured bytes of record ``i`` of this batch (for one-packet tools, not hot paths)."""
        o = int(self.offset[i])
        return self.data[o : o + int(self.caplen[i])].tobytes()

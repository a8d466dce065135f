"""Check the types of every inventory field :mod:`pcaptools.k8s.inventory` reads, before it reads them.

Missing fields and ``null`` stay tolerated (kubectl omits empty ones); a field of the wrong type
(a list where an object is, a word where a port number is) is an InventoryError naming the item
and the field, so a hand-edited or hostile inventory gives one clear line, not a Python error.
"""

from __future__ import annotations

from typing import Any

from pcaptools.errors import InventoryError

_LISTS = {  # kind -> fields the inventory iterates over
    "Node": (("status", "addresses"), ("spec", "podCIDRs")),
    "Pod": (("status", "podIPs"),),
    "Service": (("spec", "clusterIPs"), ("spec", "externalIPs"), ("spec", "ports"), ("status", "loadBalancer", "ingress")),
    "EndpointSlice": (("ports",), ("endpoints",)),
}
_TEXTS = {  # kind -> fields used as names or keys
    "Node": (("metadata", "name"), ("spec", "podCIDR"), ("spec", "providerID")),
    "Pod": (("metadata", "name"), ("metadata", "namespace"), ("spec", "nodeName")),
    "Service": (("metadata", "name"), ("metadata", "namespace"), ("spec", "type"), ("spec", "externalTrafficPolicy")),
    "EndpointSlice": (("metadata", "name"), ("metadata", "namespace")),
}


def _at(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _port(v: Any) -> bool:
    return type(v) is int and 0 <= v <= 65535


def check_items(items: list, source: str) -> None:
    """InventoryError for the first field of a type the inventory cannot use; silence when all fit."""
    src = source or "inventory"

    def bad(i: int, field: str, want: str, v: Any) -> InventoryError:
        kind = "null" if v is None else type(v).__name__
        return InventoryError(
            f"{src}: items[{i}].{field} should be {want}, found {kind}; regenerate the inventory with "
            "`kubectl get nodes,pods,services,endpointslices -A -o json`",
            path=source or None,
            record=i,
        )

    for i, it in enumerate(items):
        if not isinstance(it, dict):
            continue  # from_items says so with its own message
        kind = it.get("kind")
        if not isinstance(kind, (str, type(None))):
            raise bad(i, "kind", "a string", kind)
        if not isinstance(it.get("metadata", {}), (dict, type(None))):
            raise bad(i, "metadata", "an object", it.get("metadata"))
        for path in _LISTS.get(kind, ()):
            v = _at(it, path)
            if v and not isinstance(v, list):
                raise bad(i, ".".join(path), "a list", v)
        for path in _TEXTS.get(kind, ()):
            v = _at(it, path)
            if not isinstance(v, (str, type(None))):
                raise bad(i, ".".join(path), "a string", v)
        if kind == "Node":
            for j, a in enumerate(_at(it, ("status", "addresses")) or []):
                if isinstance(a, dict) and not isinstance(a.get("type"), (str, type(None))):
                    raise bad(i, f"status.addresses[{j}].type", "a string", a.get("type"))
        elif kind == "Service":
            for j, p in enumerate(_at(it, ("spec", "ports")) or []):
                if not isinstance(p, dict):
                    continue
                if "port" in p and not _port(p["port"]):
                    raise bad(i, f"spec.ports[{j}].port", "a port number (0-65535)", p["port"])
                tp = p.get("targetPort", 0)
                if not (_port(tp) or (isinstance(tp, str) and (tp.isascii() or not tp.isdigit()))):
                    raise bad(i, f"spec.ports[{j}].targetPort", "a port number or a port name", tp)
                if isinstance(tp, str) and tp.isdigit() and int(tp) > 65535:
                    raise bad(i, f"spec.ports[{j}].targetPort", "a port number (0-65535)", tp)
                if p.get("nodePort") is not None and not _port(p["nodePort"]):
                    raise bad(i, f"spec.ports[{j}].nodePort", "a port number (0-65535)", p["nodePort"])
        elif kind == "EndpointSlice":
            for j, e in enumerate(it.get("endpoints") or []):
                if isinstance(e, dict) and e.get("addresses") and not isinstance(e["addresses"], list):
                    raise bad(i, f"endpoints[{j}].addresses", "a list", e["addresses"])

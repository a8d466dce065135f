"""Name the kube-proxy rules (``iptables-save`` of a node) that explain each translation seen in packets.

:func:`parse` reads ``iptables-save`` text into rules per (table, chain). :func:`explain` takes the NAT table
of :func:`pcaptools.k8s.paths.paths_and_nat` and, per forward translation at a node whose rules are known,
names the chain walk that produced it: a DNAT ``frontend -> backend`` by ``KUBE-SERVICES`` (or
``KUBE-NODEPORTS``) -> ``KUBE-SVC-``/``KUBE-EXT-``/``KUBE-SVL-`` -> ``KUBE-SEP-`` with ``DNAT
--to-destination backend``; a SNAT to a node address by ``KUBE-MARK-MASQ`` + ``KUBE-POSTROUTING``
``MASQUERADE`` or a CNI's outgoing masquerade (``cali-nat-outgoing``, ``AWS-SNAT-CHAIN-0``). A translation no
rule explains is flagged (``explained`` false), as is a DNAT endpoint that the frontend's rules never reach.

Limits: rules are matched on destination address/port and jump targets only (no interface, mark, statistic or
conntrack-state evaluation); IPv4 ``/32`` and IPv6 ``/128`` destinations; one ``iptables-save`` per node.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pcaptools.errors import InventoryError
from pcaptools.fmt import endpoint


@dataclass(frozen=True)
class Rule:
    """One ``-A CHAIN ...`` line: its table, chain, jump target and the options we read."""

    table: str
    chain: str
    target: str
    dst: str = ""
    dport: int = -1
    to: str = ""  # DNAT --to-destination / SNAT --to-source
    line: str = ""


@dataclass
class Ruleset:
    """Rules of one node by (table, chain), in file order."""

    node: str
    chains: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)

    def rules(self, table: str, chain: str) -> list[Rule]:
        return self.chains.get((table, chain), [])

    def parents(self, table: str, chain: str) -> list[Rule]:
        """Rules of ``table`` that jump to ``chain``."""
        return [r for (t, _c), rs in self.chains.items() if t == table for r in rs if r.target == chain]


def parse(text: str, node: str = "", *, path: str = "") -> Ruleset:
    """An ``iptables-save`` (or ``ip6tables-save``) text as a :class:`Ruleset`."""
    rs = Ruleset(node=node)
    table = ""
    seen_table = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table, seen_table = line[1:], True
            continue
        if line.startswith(":") or line == "COMMIT":
            continue
        if not line.startswith("-A ") or not seen_table:
            raise InventoryError(
                f"{path or 'iptables-save'}: line {n} is not iptables-save output (found {raw[:60]!r}); "
                "expected '*table', ':CHAIN', '-A CHAIN ...' and 'COMMIT' lines from `iptables-save`",
                path=path or None,
            )
        try:
            tok = shlex.split(line)
        except ValueError as exc:
            raise InventoryError(f"{path or 'iptables-save'}: line {n}: {exc}", path=path or None) from exc
        chain = tok[1]
        opt = {}
        i = 2
        while i < len(tok):
            t = tok[i]
            if t.startswith("-") and i + 1 < len(tok) and not tok[i + 1].startswith("-"):
                opt.setdefault(t, tok[i + 1])
                i += 2
            else:
                i += 1
        dst = opt.get("-d", "")
        dst = dst.split("/")[0] if dst.endswith(("/32", "/128")) else dst
        dport = int(opt["--dport"]) if opt.get("--dport", "").isdigit() else -1
        r = Rule(table, chain, opt.get("-j", opt.get("-g", "")), dst, dport,
                 opt.get("--to-destination", opt.get("--to-source", "")), line)  # fmt: skip
        rs.chains.setdefault((table, chain), []).append(r)
    return rs


def load(spec: str) -> Ruleset:
    """``NODE=FILE`` (or a FILE in a directory named for its node) -> :class:`Ruleset`."""
    node, sep, file = spec.partition("=")
    if not sep:
        file, node = spec, Path(spec).parent.name
    if not node or not file:
        raise InventoryError(f"--iptables {spec!r}: expected NODE=FILE (iptables-save output of that node)")
    p = Path(file)
    if not p.is_file():
        raise InventoryError(f"--iptables {spec!r}: {file} does not exist; save it with `iptables-save > {file}` on {node}",
                             path=file)  # fmt: skip
    return parse(p.read_text(errors="replace"), node, path=file)


def _dnat_walk(rs: Ruleset, before: tuple[str, int], after: tuple[str, int]) -> tuple[list[str], str]:
    """(chain names from the entry rule to the DNAT, problem text or '')."""
    to = endpoint(*after)
    # a non-first IP fragment has no ports (-1): match the addresses only
    seps = [r for rs_ in rs.chains.values() for r in rs_ if r.table == "nat" and r.target == "DNAT"
            and (r.to in (to, after[0]) or (after[1] < 0 and r.to.rpartition(":")[0].strip("[]") == after[0]))]
    if not seps:
        return [], f"no DNAT rule of {rs.node} sends anything to {to}"
    for sep in seps:
        # walk up from the endpoint chain until a rule matching the frontend (or the nodeport) is found
        frontier, seen = [[sep.chain]], {sep.chain}
        while frontier:
            path = frontier.pop(0)
            for parent in rs.parents("nat", path[0]):
                port_ok = parent.dport == before[1] or (before[1] < 0 and parent.dport >= 0)
                if (parent.dst == before[0] and port_ok) or (not parent.dst and parent.dport >= 0 and parent.dport == before[1]):
                    return [parent.chain, *path], ""
                if parent.chain not in seen:
                    seen.add(parent.chain)
                    frontier.append([parent.chain, *path])
    return [seps[0].chain], f"{seps[0].chain} DNATs to {to}, but no rule of {rs.node} sends {endpoint(*before)} to it"


def _snat_walk(rs: Ruleset) -> tuple[list[str], str]:
    for chain in ("KUBE-POSTROUTING", "cali-nat-outgoing", "AWS-SNAT-CHAIN-0"):
        hit = [r for r in rs.rules("nat", chain) if r.target in ("MASQUERADE", "SNAT")]
        if hit:
            mark = ["KUBE-MARK-MASQ"] if chain == "KUBE-POSTROUTING" and rs.rules("nat", "KUBE-MARK-MASQ") else []
            return [*mark, chain], ""
    return [], f"no MASQUERADE or SNAT rule in {rs.node}'s nat table"


def explain(nat: pd.DataFrame, rulesets: list[Ruleset]) -> pd.DataFrame:
    """Per forward translation (DNAT/SNAT rows of ``nat``) at a node with rules: the chains that explain it, or why not."""
    by_node = {r.node: r for r in rulesets}
    rows = []
    fwd = nat.loc[nat["op"].astype(str).isin(["DNAT", "SNAT"])] if len(nat) else nat
    for r in fwd.itertuples(index=False):
        node = str(r.node) if isinstance(r.node, str) else ""
        rs = by_node.get(node)
        if rs is None:
            continue
        before, after = (str(r.addr_before), int(r.port_before)), (str(r.addr_after), int(r.port_after))
        chains, problem = _dnat_walk(rs, before, after) if r.op == "DNAT" else _snat_walk(rs)
        rows.append({"connection": int(r.connection), "journey": int(r.journey), "step": int(r.step), "op": str(r.op), "node": node,
                     "before": endpoint(*before), "after": endpoint(*after), "chains": " → ".join(chains),
                     "explained": not problem, "problem": problem or None})  # fmt: skip
    return pd.DataFrame(rows, columns=list(EXPLAIN_COLUMNS))


EXPLAIN_COLUMNS = ("connection", "journey", "step", "op", "node", "before", "after", "chains", "explained", "problem")
"""Columns of :func:`explain`: the NAT row's connection, journey and step, ``op`` DNAT/SNAT, the node, the translation
as text, the chain walk (``" → "``-joined), whether the rules explain it, and the problem when not."""


def rule_object(row: Any) -> dict:
    """One :func:`explain` row (from ``itertuples``) as the JSON ``rules`` object ``{chains, explained, problem}``
    that ``why --json`` and ``paths --json`` give a NAT step."""
    return {"chains": [y for y in str(row.chains).split(" → ") if y], "explained": bool(row.explained),
            "problem": row.problem if isinstance(row.problem, str) else None}  # fmt: skip

"""The lab's cluster as ``kubectl get nodes,pods,services,endpointslices -A -o json`` would print it.

Same shape as the real command, so a user can drop their own cluster's output in its place.
UIDs are uuid5 of the object's name: two runs of the same plan give the same inventory.
Dual-stack objects list every family as Kubernetes does: ``podIPs``, ``hostIPs``, ``clusterIPs`` and
``ipFamilies`` (the primary family first), one InternalIP per node address, and one EndpointSlice per
address family (``addressType`` IPv4 / IPv6).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pcaptools.lab.topology import Service, Topology, family_of

_FAMILY = {"ipv4": "IPv4", "ipv6": "IPv6"}
_NS = uuid.UUID("6f1b7d2e-4c1a-4b8e-9a57-0c0a7b1e5a11")


def _uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}/{name}"))


def _meta(kind: str, name: str, namespace: str | None, created: str, labels: dict[str, str] | None = None,
          **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": _uid(kind, f"{namespace}/{name}"), "creationTimestamp": created,
                            "resourceVersion": str(int(hashlib.sha1(name.encode()).hexdigest()[:6], 16))}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    meta.update(extra)
    return meta


def build_inventory(topo: Topology, created: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    """Node, Pod, Service and EndpointSlice objects of the lab, as a kubectl ``List``."""
    items: list[dict[str, Any]] = []
    for n in topo.nodes:
        labels = {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "topology.kubernetes.io/zone": n.zone, "topology.kubernetes.io/region": n.zone[:-1]}
        spec: dict[str, Any] = {}
        if topo.cni == "vpc":
            iid = "i-0" + hashlib.sha1(n.name.encode()).hexdigest()[:16]
            spec["providerID"] = f"aws:///{n.zone}/{iid}"
        else:
            spec["podCIDR"] = n.pod_cidr
            spec["podCIDRs"] = list(n.pod_cidrs)
        annotations = {f"projectcalico.org/{_FAMILY[family_of(ip)]}VXLANTunnelAddr": ip for ip in n.tunnel_ips}
        meta = _meta("Node", n.name, None, created, labels)
        if annotations:
            meta["annotations"] = annotations
        items.append({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": {
            "addresses": [*({"type": "InternalIP", "address": ip} for ip in n.ips),
                          {"type": "Hostname", "address": n.name}],
            "conditions": [{"type": "Ready", "status": "True"}]}})
    for p in topo.pods:
        node = topo.node(p.node)
        containers = [{"name": p.labels.get("app", "main"), "image": "python:3.11-slim",
                       "ports": [{"name": name, "containerPort": port, "protocol": proto}
                                 for name, port, proto in p.ports]}]
        items.append({"apiVersion": "v1", "kind": "Pod",
                      "metadata": _meta("Pod", p.name, p.namespace, created, p.labels),
                      "spec": {"nodeName": p.node, "containers": containers},
                      "status": {"phase": "Running", "hostIP": node.ip, "hostIPs": [{"ip": ip} for ip in node.ips],
                                 "podIP": p.ip, "podIPs": [{"ip": ip} for ip in p.ips],
                                 "conditions": [{"type": "Ready", "status": "True"}]}})
    for s in topo.services:
        items.append(_service(s, created))
    for s in topo.services:
        for family in topo.families:
            items.append(_endpointslice(topo, s, created, family))
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def _service(s: Service, created: str) -> dict[str, Any]:
    ports = []
    for p in s.ports:
        port: dict[str, Any] = {"name": p.name, "port": p.port, "targetPort": p.target_port, "protocol": p.protocol}
        if p.node_port is not None:
            port["nodePort"] = p.node_port
        ports.append(port)
    cips = list(s.cluster_ips or (s.cluster_ip,))
    spec: dict[str, Any] = {"type": s.type, "clusterIP": s.cluster_ip, "clusterIPs": cips,
                            "ipFamilies": [_FAMILY[family_of(ip)] for ip in cips],
                            "ipFamilyPolicy": "RequireDualStack" if len(cips) > 1 else "SingleStack", "ports": ports,
                            "selector": dict(s.selector), "sessionAffinity": "None",
                            "internalTrafficPolicy": "Cluster"}
    if s.external_traffic_policy:
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    status: dict[str, Any] = {"loadBalancer": {}}
    annotations = None
    if s.type == "LoadBalancer":
        status["loadBalancer"] = {"ingress": [{"hostname": s.lb_hostname, "ip": ip} for ip in s.lb_ips or (s.lb_ip,)]}
        annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "external",
                       "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "instance"}
    meta = _meta("Service", s.name, s.namespace, created)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": status}


def _endpointslice(topo: Topology, s: Service, created: str, family: str = "ipv4") -> dict[str, Any]:
    suffix = hashlib.sha1((s.name if family == topo.families[0] else f"{s.name}/{family}").encode()).hexdigest()[:5]
    endpoints = []
    for p in topo.endpoints(s):
        endpoints.append({"addresses": [p.addr(family)], "nodeName": p.node, "zone": topo.node(p.node).zone,
                          "conditions": {"ready": True, "serving": True, "terminating": False},
                          "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name,
                                        "uid": _uid("Pod", p.key)}})
    labels = {"kubernetes.io/service-name": s.name, "endpointslice.kubernetes.io/managed-by":
              "endpointslice-controller.k8s.io"}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": _meta("EndpointSlice", f"{s.name}-{suffix}", s.namespace, created, labels,
                              ownerReferences=[{"apiVersion": "v1", "kind": "Service", "name": s.name,
                                                "uid": _uid("Service", s.key)}]),
            "addressType": _FAMILY[family], "endpoints": endpoints,
            "ports": [{"name": p.name, "port": p.target_port, "protocol": p.protocol} for p in s.ports]}

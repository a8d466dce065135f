#!/usr/bin/env bash
# Capture a Kubernetes cluster's nodes for pcaptools, in the layout pcaptools reads without a manifest:
#
#   OUT/inventory.json            kubectl get nodes,pods,services,endpointslices -A -o json
#   OUT/NODE/any.pcap             tcpdump -i any -s 0 on NODE (LINUX_SLL2: every interface, ifindex per packet)
#   OUT/NODE/NODE.links.json      ip -j link on NODE (names those ifindexes)
#   OUT/NODE/IFACE.pcap           with -i IFACE (repeatable): one capture per interface instead of -i any
#
# Then:  pcaptools manifest OUT   (what was inferred, with the evidence)   and   pcaptools paths OUT
#
# How: one privileged hostNetwork pod per node (image with tcpdump and iproute2), `kubectl exec` streams
# tcpdump's pcap to stdout (binary-safe without -t), the pods are deleted on exit (also on Ctrl-C).
# Needs: kubectl with rights to create privileged pods, exec into them and list the cluster.
set -euo pipefail

usage() {
  cat <<USAGE
usage: $0 [-o OUT] [-d SECONDS] [-i IFACE]... [--image IMAGE] [-n NAMESPACE] [NODE...]
  -o OUT        output directory (default: captures-<UTC time>)
  -d SECONDS    capture duration (default: 30); reproduce the problem meanwhile
  -i IFACE      capture IFACE instead of 'any' (repeatable, e.g. -i eth0 -i vxlan.calico)
  --image IMG   image with tcpdump and ip (default: nicolaka/netshoot)
  -n NAMESPACE  namespace for the capture pods (default: default)
  NODE...       nodes to capture (default: every node of 'kubectl get nodes')
USAGE
}

out="captures-$(date -u +%Y%m%dT%H%M%SZ)"; secs=30; image="nicolaka/netshoot"; ns="default"; ifaces=(); nodes=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -d) secs="$2"; shift 2 ;;
    -i) ifaces+=("$2"); shift 2 ;;
    --image) image="$2"; shift 2 ;;
    -n) ns="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "capture-cluster: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) nodes+=("$1"); shift ;;
  esac
done
[ ${#ifaces[@]} -gt 0 ] || ifaces=(any)
if [ ${#nodes[@]} -eq 0 ]; then
  mapfile -t nodes < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
fi
[ ${#nodes[@]} -gt 0 ] || { echo "capture-cluster: no nodes found (kubectl get nodes)" >&2; exit 2; }
mkdir -p "$out"

pod_of() { printf 'pcaptools-capture-%s' "$(printf '%s' "$1" | tr -c 'a-z0-9-' '-' | cut -c1-40)"; }
cleanup() { for n in "${nodes[@]}"; do kubectl -n "$ns" delete pod "$(pod_of "$n")" --ignore-not-found --wait=false >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

for n in "${nodes[@]}"; do
  kubectl -n "$ns" run "$(pod_of "$n")" --image="$image" --restart=Never --quiet --overrides="$(cat <<JSON
{"spec": {"nodeName": "$n", "hostNetwork": true, "hostPID": true, "tolerations": [{"operator": "Exists"}],
  "containers": [{"name": "capture", "image": "$image", "command": ["sleep", "infinity"],
                  "securityContext": {"privileged": true}}]}}
JSON
)" >/dev/null
done
for n in "${nodes[@]}"; do
  kubectl -n "$ns" wait --for=condition=Ready "pod/$(pod_of "$n")" --timeout=120s >/dev/null
  mkdir -p "$out/$n"
  kubectl -n "$ns" exec "$(pod_of "$n")" -- ip -j link > "$out/$n/$n.links.json"
done
echo "capturing ${ifaces[*]} on ${nodes[*]} for $secs s ..." >&2
pids=()
for n in "${nodes[@]}"; do
  for i in "${ifaces[@]}"; do
    kubectl -n "$ns" exec "$(pod_of "$n")" -- timeout -s INT "$secs" tcpdump -i "$i" -s 0 -U -w - 2>/dev/null > "$out/$n/$i.pcap" &
    pids+=($!)
  done
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
kubectl get nodes,pods,services,endpointslices -A -o json > "$out/inventory.json"
echo "wrote $out (exit $rc); next: pcaptools manifest $out && pcaptools paths $out" >&2

#!/usr/bin/env bash
# Regenerate the captures in this directory (needs root, iproute2, tcpdump, dumpcap, editcap, python3).
#
# Two network namespaces joined by a veth pair carry ICMP echo, UDP and TCP traffic while four captures
# run at once: tcpdump -i any (nanosecond, LINUX_SLL2 as Debian's tcpdump 4.99 writes it),
# tcpdump on the veth (Ethernet, microseconds), tcpdump -s 96 (snaplen cut) and dumpcap (native
# pcapng with interface options and statistics). The other files are derived with editcap, cat,
# gzip and head. Only the ptio-* namespaces are touched; no packet leaves them.
set -euo pipefail
cd "$(dirname "$0")"
A=ptio-a B=ptio-b
IPA=198.51.100.1 IPB=198.51.100.2 # TEST-NET-2, never routed
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$A"
ip netns add "$B"
ip link add ptio-va netns "$A" type veth peer name ptio-vb netns "$B"
ip -n "$A" addr add "$IPA/24" dev ptio-va
ip -n "$B" addr add "$IPB/24" dev ptio-vb
ip -n "$A" link set ptio-va up
ip -n "$B" link set ptio-vb up
ip -n "$A" link set lo up
ip -n "$B" link set lo up

wait_for() { # wait_for FILE PATTERN: until FILE contains PATTERN (at most 10 s)
  for _ in $(seq 200); do grep -aq "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
capture() { # capture NAME CMD...: start a capture in namespace A and wait until it listens
  local name=$1; shift
  ip netns exec "$A" "$@" 2>"$tmp/$name.err" &
  pids+=($!)
  wait_for "$tmp/$name.err" "listening on\|Capturing on"
}
capture any tcpdump -U --immediate-mode -n -i any --time-stamp-precision=nano -w "$tmp/any_nano.pcap"
capture eth tcpdump -U --immediate-mode -n -i ptio-va -w "$tmp/eth.pcap"
capture snap tcpdump -U --immediate-mode -n -i ptio-va -s 96 -w "$tmp/snaplen96.pcap"
capture dumpcap dumpcap -q -i ptio-va -w "$tmp/dumpcap.pcapng"

# a TCP echo server and a UDP sink in B; wait until they listen
ip netns exec "$B" python3 - "$IPB" >"$tmp/srv.out" 2>&1 <<'PY' &
import socket, sys
t = socket.create_server((sys.argv[1], 5001)); u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], 5002)); print("ready", flush=True)
c, _ = t.accept()
while data := c.recv(65536):
    c.sendall(data)
c.close()
for _ in range(5):
    u.recvfrom(2048)
PY
srv=$!
wait_for "$tmp/srv.out" ready

ip netns exec "$A" python3 - "$IPB" <<'PY'
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s & 0xFFFF) + (s >> 16)
    return ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)  # ping(8) is not installed
icmp.settimeout(2)
for seq in range(3):
    body = struct.pack("!HH", 0x7074, seq) + bytes(1000)
    icmp.sendto(struct.pack("!BBH", 8, 0, csum(b"\x08\x00\x00\x00" + body)) + body, (sys.argv[1], 0))
    icmp.recvfrom(2048)  # the echo reply
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5):
    u.sendto(bytes([i]) * (100 + 300 * i), (sys.argv[1], 5002))
c = socket.create_connection((sys.argv[1], 5001))
for size in (10, 1400, 3000, 200):
    c.sendall(b"x" * size)
    got = 0
    while got < size:
        got += len(c.recv(65536))
c.close()
PY
wait "$srv"

# a last UDP datagram marks the end of the traffic: stop each capture once it is in its file
MARK=ptio-end-of-traffic
ip netns exec "$A" python3 -c "import socket,sys; socket.socket(2, 2).sendto(b'$MARK', ('$IPB', 5999))"
for f in any_nano.pcap eth.pcap snaplen96.pcap dumpcap.pcapng; do wait_for "$tmp/$f" "$MARK"; done
for p in "${pids[@]}"; do kill -INT "$p"; done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

cp "$tmp"/{any_nano.pcap,eth.pcap,snaplen96.pcap,dumpcap.pcapng} .
chmod 644 any_nano.pcap eth.pcap snaplen96.pcap dumpcap.pcapng
editcap -F pcapng eth.pcap eth.pcapng
editcap -F pcapng any_nano.pcap any_nano.pcapng
cat eth.pcapng any_nano.pcapng >two_sections.pcapng
gzip -9 -n -c eth.pcap >eth.pcap.gz
head -c $(($(stat -c %s eth.pcap) - 37)) eth.pcap >truncated_last.pcap
for f in any_nano.pcap eth.pcap snaplen96.pcap dumpcap.pcapng eth.pcapng any_nano.pcapng two_sections.pcapng eth.pcap.gz truncated_last.pcap; do
  printf '%s\t%s\t%s\n' "$f" "$(capinfos -T -r -c -E "$f" | cut -f2-)" "$(sha256sum "$f" | cut -c1-16)"
done

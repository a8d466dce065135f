"""The lab's fault plan without building anything: which faults each CNI takes, and their truth's shape."""

from __future__ import annotations

import pytest

from pcaptools.errors import LabError
from pcaptools.lab import faults, topology


def test_mtu_and_asymmetric_return_faults_run_on_native_routing():
    names = ["mtu-blackhole", "mtu-icmp", "asymmetric-return"]
    got = {f.name: f for f in faults.plan(topology.plan("vpc"), names, first_id=0)}
    assert got["mtu-icmp"].truth["first_missed"].endswith(":eth0")  # the uplink, where calico has its overlay
    assert got["mtu-blackhole"].truth["cause"] == "mtu-blackhole" and got["mtu-blackhole"].during  # jumbo only meanwhile
    assert got["asymmetric-return"].truth["node"] is None  # dropped on the third node, between nodes


def test_a_hostnetwork_client_cannot_share_a_run_with_nodelocal_dns():
    with pytest.raises(LabError, match="hostnetwork-client and nodelocal-dns"):
        faults.plan(topology.plan("vpc"), ["hostnetwork-client", "nodelocal-dns"], first_id=0)


@pytest.mark.parametrize("cni", ["vpc", "calico-vxlan"])
def test_conntrack_invalid_is_located_on_the_clients_node_after_its_veth(cni):
    topo = topology.plan(cni)
    (f,) = faults.plan(topo, ["conntrack-invalid"], first_id=7)
    client = topo.pod(f.truth["client"])
    assert f.job["id"] == 7 and f.job["sport"] == faults.FIRST_SPORT
    assert (f.truth["cause"], f.truth["direction"], f.truth["node"]) == ("conntrack", "forward", client.node)
    assert f.truth["last_seen"] == f"{client.node}:{client.host_if}"
    argv = [" ".join(a) for _ns, a in f.commands]
    assert any("--ctstate INVALID" in a and "DROP" in a for a in argv)
    assert any("nf_conntrack_tcp_loose=0" in a for a in argv)

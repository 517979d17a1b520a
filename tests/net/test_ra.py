"""IPv6 Router Advertisements: a real client (rdisc6) and a real foreign router (radvd).

Full DHCP: an RS from the client namespace gets exactly our RA (hop limit 255,
from our link-local address, router lifetime 0, M=O=0, no prefixes, only the
source link-layer option), seen by rdisc6 and, byte for byte, by a raw socket.
Proxy mode: no RA at all. With radvd on the segment: we never send one (radvd
there first), and we fall silent when radvd appears after us.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pxewizard.proto.ra import build_ra
from tests.net.dhcp_support import dhcp_plan, serve_dhcp
from tests.support.netns import Netns, bridge_ns, link_netns, namespace
from tests.support.serving import Served
from tests.support.tools import require, require_root

SERVER_MAC = "52:54:00:99:06:01"
CLIENT_MAC = "52:54:00:99:06:02"
ROUTER_MAC = "52:54:00:99:06:03"


def _link_local(ns: Netns, ifname: str, timeout: float = 10.0) -> str:
    """The interface's link-local address once duplicate address detection is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns.run("ip", "-6", "-j", "addr", "show", "dev", ifname, "scope", "link").stdout
        for iface in json.loads(out or "[]"):
            for a in iface.get("addr_info", []):
                if "local" in a and not a.get("tentative"):
                    return a["local"]
        time.sleep(0.1)
    raise AssertionError(f"{ns.name}/{ifname}: no usable link-local address in {timeout} s")


@contextlib.contextmanager
def _segment(with_router: bool = False) -> Iterator[tuple[Netns, Netns, Netns | None]]:
    """Server, client (and a router namespace) on one bridge."""
    with contextlib.ExitStack() as st:
        br = st.enter_context(bridge_ns())
        srv = st.enter_context(namespace("srv"))
        cli = st.enter_context(namespace("cli"))
        ports = [("p1", srv, "pxe0", "10.99.0.1/24", SERVER_MAC),
                 ("p2", cli, "eth0", None, CLIENT_MAC)]
        rtr = None
        if with_router:
            rtr = st.enter_context(namespace("rtr"))
            ports.append(("p3", rtr, "eth0", None, ROUTER_MAC))
        for port, ns, ifname, addr, mac in ports:
            link_netns(br, port, ns, ifname, b_addr=addr, b_mac=mac)
            br.run("ip", "link", "set", port, "master", "br0")
        yield srv, cli, rtr


def _rdisc6(cli: Netns, *, multiple: bool = False) -> subprocess.CompletedProcess:
    _link_local(cli, "eth0")
    args = ["rdisc6", "-n", "-m" if multiple else "-1", "-w", "1500", "-r", "2", "eth0"]
    return cli.run(*args, check=False, timeout=30)


def _ras(output: str) -> list[dict[str, str]]:
    """rdisc6's verbose output, one dict per advertisement (its "from" line ends one)."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in output.splitlines():
        if ":" in line and not line.startswith(" from"):
            k, v = line.split(":", 1)
            cur[k.strip()] = v.strip()
        if line.strip().startswith("from "):
            cur["from"] = line.split()[-1]
            out.append(cur)
            cur = {}
    return out


RAW_CLIENT = r"""
import socket, struct, sys, select
ifname = sys.argv[1]
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_ICMPV6, 1, struct.pack("=8I", *[0xffffffff] * 4,
             0xffffffff & ~(1 << (134 & 31)), *[0xffffffff] * 3))
mac = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0, 1, 1]) + mac, ("ff02::2", 0, 0, idx))
r, _, _ = select.select([s], [], [], 3)
if not r:
    print("none"); sys.exit(0)
data, anc, _, peer = s.recvmsg(1500, socket.CMSG_SPACE(4))
hop = [struct.unpack("@i", d[:4])[0] for lvl, t, d in anc if t == socket.IPV6_HOPLIMIT]
print(peer[0].split("%")[0], hop[0] if hop else -1, data.hex())
"""


def _served_events(served: Served, kind: str) -> list[dict]:
    return [e for e in served.events() if e.get("kind") == kind]


def test_rs_gets_exactly_our_ra_in_full_mode(tmp_path: Path) -> None:
    require_root()
    require("rdisc6")
    with _segment() as (srv, cli, _):
        with serve_dhcp(srv, dhcp_plan(tmp_path, mode="full")) as served:
            server_ll = _link_local(srv, "pxe0")
            unsolicited = served.wait_event(lambda e: e.get("kind") == "router_advert_sent"
                                            and not e.get("solicit"), timeout=15)
            assert unsolicited["dest"] == "ff02::1"

            r = _rdisc6(cli)
            assert r.returncode == 0, r.stdout + r.stderr
            ras = _ras(r.stdout)
            assert len(ras) == 1, r.stdout
            ra = ras[0]
            assert ra["from"] == server_ll
            assert ra["Hop limit"].startswith("undefined"), r.stdout
            assert ra["Stateful address conf."] == "No"
            assert ra["Stateful other conf."] == "No"
            assert ra["Router lifetime"].startswith("0 "), r.stdout
            assert ra["Reachable time"].startswith("unspecified"), r.stdout
            assert ra["Retransmit time"].startswith("unspecified"), r.stdout
            assert ra["Source link-layer address"].lower() == SERVER_MAC
            assert "Prefix" not in r.stdout and "MTU" not in r.stdout, r.stdout

            # byte for byte, with its hop limit, from a raw socket
            time.sleep(0.6)  # past the per-client gap of rdisc6's last RS
            raw = cli.run(sys.executable, "-c", RAW_CLIENT, "eth0", timeout=30)
            src, hop, hexdata = raw.stdout.split()
            data = bytes.fromhex(hexdata)
            assert src == server_ll and int(hop) == 255
            want = build_ra(bytes.fromhex(SERVER_MAC.replace(":", "")))
            assert data[:2] + data[4:] == want[:2] + want[4:]  # all but the checksum

            sent = served.wait_event(lambda e: e.get("kind") == "router_advert_sent"
                                     and e.get("client") == CLIENT_MAC)
            assert sent["dest"].startswith("fe80::"), sent


def test_proxy_mode_sends_no_ra(tmp_path: Path) -> None:
    require_root()
    require("rdisc6")
    with _segment() as (srv, cli, _):
        with serve_dhcp(srv, dhcp_plan(tmp_path, mode="proxy")) as served:
            r = _rdisc6(cli)
            assert r.returncode != 0 and not _ras(r.stdout), r.stdout
            kinds = {e.get("kind") for e in served.events()}
            assert "router_advert_sent" not in kinds
            assert not any(e.get("service") == "ra" for e in served.events())


def _radvd(rtr: Netns, tmp: Path) -> subprocess.Popen:
    rtr.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    conf = tmp / "radvd.conf"
    conf.write_text("interface eth0 {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n"
                    "  MaxRtrAdvInterval 4;\n  AdvDefaultLifetime 600;\n"
                    "  prefix 2001:db8:99::/64 { };\n};\n")
    _link_local(rtr, "eth0")
    proc = rtr.popen("radvd", "-n", "-m", "stderr", "-C", str(conf), "-p", str(tmp / "radvd.pid"))
    time.sleep(0.5)
    if proc.poll() is not None:
        raise AssertionError(f"radvd exited: {proc.stdout.read().decode(errors='replace')}")
    return proc


def test_no_ra_beside_a_router_seen_first(tmp_path: Path) -> None:
    require_root()
    require("rdisc6", "radvd")
    with _segment(with_router=True) as (srv, cli, rtr):
        assert rtr is not None
        _radvd(rtr, tmp_path)
        router_ll = _link_local(rtr, "eth0")
        with serve_dhcp(srv, dhcp_plan(tmp_path, mode="full")) as served:
            seen = served.wait_event(lambda e: e.get("kind") == "foreign_router_seen",
                                     timeout=15)
            assert seen["router"] == router_ll and seen["silenced"]
            assert seen["prefixes"] == ["2001:db8:99::/64"] and seen["lifetime"] == 600
            r = _rdisc6(cli, multiple=True)
            assert {ra["from"] for ra in _ras(r.stdout)} == {router_ll}, r.stdout
            sent = [e for e in _served_events(served, "router_advert_sent")
                    if not e.get("solicit")]
            assert not sent, sent


def test_falls_silent_when_a_router_appears(tmp_path: Path) -> None:
    require_root()
    require("rdisc6", "radvd")
    with _segment(with_router=True) as (srv, cli, rtr):
        assert rtr is not None
        with serve_dhcp(srv, dhcp_plan(tmp_path, mode="full")) as served:
            server_ll = _link_local(srv, "pxe0")
            served.wait_event(lambda e: e.get("kind") == "router_advert_sent"
                              and not e.get("solicit"), timeout=15)
            r = _rdisc6(cli)
            assert [ra["from"] for ra in _ras(r.stdout)] == [server_ll], r.stdout

            _radvd(rtr, tmp_path)
            router_ll = _link_local(rtr, "eth0")
            served.wait_event(lambda e: e.get("kind") == "foreign_router_seen", timeout=15)
            before = len(_served_events(served, "router_advert_sent"))
            r = _rdisc6(cli, multiple=True)
            assert {ra["from"] for ra in _ras(r.stdout)} == {router_ll}, r.stdout
            assert len(_served_events(served, "router_advert_sent")) == before


def test_bridge_interface_answers_a_port_added_later(tmp_path: Path) -> None:
    """`pxewizard lab`'s case: the Plan's interface is a bridge whose port (the VM's tap)
    appears after serving started."""
    require_root()
    require("rdisc6")
    with namespace("srv") as srv, namespace("cli") as cli:
        srv.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
                "forward_delay", "0")
        srv.run("ip", "addr", "add", "10.99.0.1/24", "dev", "br0")
        srv.run("ip", "link", "set", "br0", "up")
        with serve_dhcp(srv, dhcp_plan(tmp_path, mode="full", interface="br0")) as served:
            served.wait_event(lambda e: e.get("kind") == "router_advert_sent"
                              and not e.get("solicit"), timeout=30)
            link_netns(srv, "p-cli", cli, "eth0", b_mac=CLIENT_MAC)
            srv.run("ip", "link", "set", "p-cli", "master", "br0")
            r = _rdisc6(cli)
            assert [ra["from"] for ra in _ras(r.stdout)] == [_link_local(srv, "br0")], r.stdout

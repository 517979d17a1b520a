"""Real DHCP clients nobody here wrote get leases from our full DHCP server.

One server (``pxewizard serve`` in a namespace) for the module; each client
runs in the client namespace with its own MAC: busybox udhcpc, ISC dhclient,
dhcpcd, and nmap's broadcast-dhcp-discover script.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.dhcp_support import dhcp_plan, exchanges, serve_dhcp
from tests.support.netns import NetPair, net_pair
from tests.support.serving import Served
from tests.support.tools import require, require_root

ROUTER, DNS, DOMAIN = "10.99.0.1", "10.99.0.53", "pxe.test"
POOL = [f"10.99.0.{i}" for i in range(100, 120)]

DUMP_SCRIPT = """#!/bin/sh
# hook script: record what the client was told
env | sort > "{out}.$1"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetPair, Served, Path]]:
    require_root()
    tmp = tmp_path_factory.mktemp("dhcp-clients")
    with net_pair() as pair:
        plan = dhcp_plan(tmp, range_start=POOL[0], range_end=POOL[-1])
        with serve_dhcp(pair.server, plan) as served:
            yield pair, served, tmp


def _use_mac(pair: NetPair, mac: str) -> None:
    c = pair.client
    c.run("ip", "addr", "flush", "dev", "eth0")
    c.run("ip", "link", "set", "eth0", "down")
    c.run("ip", "link", "set", "eth0", "address", mac)
    c.run("ip", "link", "set", "eth0", "up")


def _env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def _acked(served: Served, mac: str) -> dict:
    return served.wait_event(lambda e: e["kind"] == "dhcp_exchange" and e["mac"] == mac
                             and e["msg_out"] == "ACK", timeout=5)


def test_busybox_udhcpc(server: tuple[NetPair, Served, Path]) -> None:
    require("udhcpc")
    pair, served, tmp = server
    mac = "52:54:00:99:01:01"
    _use_mac(pair, mac)
    script = tmp / "udhcpc.sh"
    script.write_text(DUMP_SCRIPT.format(out=tmp / "udhcpc"))
    script.chmod(0o755)
    r = pair.client.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "4", "-T", "1",
                        "-s", str(script), "-O", "bootfile", "-O", "tftp", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    env = _env(tmp / "udhcpc.bound")
    assert env["ip"] in POOL
    assert env["router"] == ROUTER
    assert env["dns"].split() == [DNS]
    assert env["domain"] == DOMAIN
    assert env["subnet"] == "255.255.255.0"
    # no option 60/93: not a PXE ROM (an initramfs's udhcpc): an address, no boot loader
    assert not env.get("boot_file") and not env.get("bootfile")
    ev = _acked(served, mac)
    assert ev["yiaddr"] == env["ip"] and "not a PXE client" in ev["reason"]
    assert ev["boot_file"] == ""


def test_isc_dhclient(server: tuple[NetPair, Served, Path]) -> None:
    require("dhclient")
    pair, served, tmp = server
    mac = "52:54:00:99:01:02"
    _use_mac(pair, mac)
    lease = tmp / "dhclient.leases"
    script = tmp / "dhclient.sh"
    script.write_text("#!/bin/sh\nenv | sort > \"%s.$reason\"\n" % (tmp / "dhclient"))
    script.chmod(0o755)
    p = pair.client.popen("dhclient", "-d", "-1", "-4", "-sf", str(script), "-lf", str(lease),
                          "-pf", str(tmp / "dhclient.pid"), "eth0")
    deadline = time.monotonic() + 20
    while not (tmp / "dhclient.BOUND").exists() and time.monotonic() < deadline:
        assert p.poll() is None, p.stdout.read().decode()
        time.sleep(0.2)
    assert (tmp / "dhclient.BOUND").exists(), "dhclient did not bind"
    env = _env(tmp / "dhclient.BOUND")
    assert env["new_ip_address"] in POOL
    assert env["new_routers"] == ROUTER
    assert env["new_domain_name_servers"] == DNS
    assert env["new_domain_name"] == DOMAIN
    # no option 60/93: not a PXE ROM, so an address and no boot loader (issue 21)
    assert not env.get("new_filename")
    text = lease.read_text()
    assert "bootfile-name" not in text and "tftp-server-name" not in text
    ack = _acked(served, mac)
    assert ack["yiaddr"] == env["new_ip_address"] and "not a PXE client" in ack["reason"]
    pair.client.kill_all()


def test_dhcpcd(server: tuple[NetPair, Served, Path]) -> None:
    require("dhcpcd")
    pair, served, tmp = server
    mac = "52:54:00:99:01:03"
    _use_mac(pair, mac)
    script = tmp / "dhcpcd.sh"
    script.write_text("#!/bin/sh\nenv | sort > \"%s.$reason\"\n" % (tmp / "dhcpcd"))
    script.chmod(0o755)
    conf = tmp / "dhcpcd.conf"
    conf.write_text("option domain_name_servers, domain_name, routers, tftp_server_name, "
                    "bootfile_name\nnohook resolv.conf\n")
    # dhcpcd keeps leases in /var/lib/dhcpcd (fixed at build time), on the host's disk: an
    # earlier run's lease would make it REBIND, which a server with no record of it must not
    # answer (RFC 2131 4.3.2), and it falls back to IPv4LL. Its own empty tmpfs there instead.
    run = (f"mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && exec dhcpcd "
           f"-f {conf} -c {script} -4 -B -1 -t 20 --nobackground eth0")
    r = pair.client.run("unshare", "-m", "sh", "-c", run, check=False, timeout=40)
    assert (tmp / "dhcpcd.BOUND").exists(), r.stdout + r.stderr
    env = _env(tmp / "dhcpcd.BOUND")
    assert env["new_ip_address"] in POOL
    assert env["new_routers"] == ROUTER
    assert env["new_domain_name_servers"] == DNS
    assert env["new_domain_name"] == DOMAIN
    # not a PXE ROM: no boot loader for it (issue 21)
    assert not env.get("new_filename") and not env.get("new_bootfile_name")
    assert _acked(served, mac)["yiaddr"] == env["new_ip_address"]
    pair.client.run("dhcpcd", "-f", str(conf), "-x", "eth0", check=False)


def test_nmap_broadcast_dhcp_discover(server: tuple[NetPair, Served, Path]) -> None:
    require("nmap")
    pair, served, tmp = server
    _use_mac(pair, "52:54:00:99:01:04")
    # nmap's script needs an IPv4 address on the interface to pick it (nothing to do with us)
    pair.client.run("ip", "addr", "add", "192.0.2.9/24", "dev", "eth0")
    r = pair.client.run("nmap", "--script", "broadcast-dhcp-discover", "-e", "eth0",
                        "--script-args", "broadcast-dhcp-discover.timeout=5", timeout=60)
    out = r.stdout
    m = re.search(r"IP Offered: (\S+)", out)
    assert m and m.group(1) in POOL, out
    assert re.search(r"Server Identifier: 10\.99\.0\.1\b", out), out
    assert re.search(r"Router: 10\.99\.0\.1\b", out), out
    assert re.search(r"Domain Name Server: 10\.99\.0\.53\b", out), out
    # nmap's DISCOVER carries no option 60/93: not a PXE client, no boot file (issue 21)
    assert "Bootfile Name" not in out and "TFTP Server Name" not in out, out
    assert exchanges(served, msg_in="DISCOVER", msg_out="OFFER", yiaddr=m.group(1))


def test_udhcpc_renew_is_unicast_and_acked(server: tuple[NetPair, Served, Path]) -> None:
    """SIGUSR1 makes udhcpc renew now: a unicast REQUEST with ciaddr (RFC 2131 §4.3.2)."""
    require("udhcpc")
    pair, served, tmp = server
    mac = "52:54:00:99:01:05"
    _use_mac(pair, mac)
    script = tmp / "renew.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $ip" >> {tmp / "renew.log"}\n'
                      '[ "$1" = bound ] || [ "$1" = renew ] && '
                      'ip addr replace "$ip/$mask" dev "$interface"\nexit 0\n')
    script.chmod(0o755)
    log = tmp / "renew.log"
    p = pair.client.popen("udhcpc", "-f", "-i", "eth0", "-t", "4", "-T", "1", "-s", str(script))
    deadline = time.monotonic() + 15
    while not (log.exists() and "bound" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert log.exists() and "bound" in log.read_text()
    ip = log.read_text().split("bound ")[1].split()[0]
    os.kill(p.pid, signal.SIGUSR1)  # `ip netns exec` execs udhcpc: same PID
    ev = served.wait_event(lambda e: e["kind"] == "dhcp_exchange" and e["mac"] == mac
                           and "renewing" in e["reason"], timeout=10)
    assert ev["msg_out"] == "ACK" and ev["yiaddr"] == ip and ev["requested_ip"] == ip
    deadline = time.monotonic() + 5
    while "renew" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"renew {ip}" in log.read_text()
    pair.client.kill_all()

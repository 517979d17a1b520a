"""The real detection (pyroute2, psutil) and the two changes it makes, inside a namespace."""

from __future__ import annotations

import json
import sys
import textwrap

from tests.support import serving
from tests.support.netns import namespace
from tests.support.tools import require_root

SCRIPT = textwrap.dedent("""
    import asyncio, dataclasses, json, socket
    from pxewizard.detect.bridge import bridge_forward_now
    from pxewizard.detect.interfaces import assign_address, list_interfaces
    from pxewizard.detect.ports import check_ports
    from pxewizard.detect.host import SystemDetector

    async def main():
        out = {}
        out["before"] = [dataclasses.asdict(i) for i in await list_interfaces()]
        held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held.bind(("0.0.0.0", 69))
        out["ports"] = [dataclasses.asdict(p) for p in await check_ports()]
        held.close()
        await assign_address("veth-a", "10.77.0.1", 24, "10.77.0.254")
        await bridge_forward_now("br0")
        out["after"] = [dataclasses.asdict(i) for i in await list_interfaces()]
        host = await SystemDetector().host()
        out["root"] = host.is_root
        out["ram"] = host.ram_total
        print(json.dumps(out))

    asyncio.run(main())
""")


def test_interfaces_ports_address_and_bridge_in_a_namespace() -> None:
    require_root()
    with namespace("det") as ns:
        ns.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "1",
               "forward_delay", "1500")
        ns.run("ip", "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
        ns.run("ip", "link", "set", "veth-b", "master", "br0")
        ns.run("ip", "link", "set", "br0", "up")
        ns.run("ip", "link", "set", "veth-b", "up")
        res = ns.run(sys.executable, "-c", SCRIPT, cwd=str(serving.REPO),
                     env={"PYTHONPATH": str(serving.REPO), "PATH": "/usr/sbin:/usr/bin:/bin"})
        out = json.loads(res.stdout)
    before = {i["name"]: i for i in out["before"]}
    assert set(before) == {"lo", "br0", "veth-a", "veth-b"}
    assert before["br0"]["bridge"]["stp"] is True
    assert before["br0"]["bridge"]["forward_delay"] == 15.0
    assert before["br0"]["bridge"]["ports"] == ["veth-b"]
    assert before["veth-b"]["master"] == "br0" and before["veth-a"]["kind"] == "veth"
    assert before["veth-a"]["ipv4"] == [] and before["lo"]["loopback"] is True
    ports = {(p["proto"], p["port"]): p for p in out["ports"]}
    assert ports["udp", 69]["holder"] and "python" in ports["udp", 69]["holder"]
    assert ports["udp", 67]["holder"] is None
    after = {i["name"]: i for i in out["after"]}
    assert after["veth-a"]["ipv4"] == ["10.77.0.1/24"]
    assert after["veth-a"]["gateway"] == "10.77.0.254"
    assert after["br0"]["bridge"]["stp"] is False
    assert after["br0"]["bridge"]["forward_delay"] == 0.0
    assert out["root"] is True and out["ram"] > 0

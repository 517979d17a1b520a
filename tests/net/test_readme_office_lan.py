"""The README's "First boot on an office LAN", run as written.

The Plan and the commands are read from README.md (its toml and sh blocks in
that section), not copied here, so the walk-through cannot drift from what the
program does. The office: a bridge namespace joins the rescue machine (eth0,
192.168.1.20, where the commands run), the office router (a stock dnsmasq at
192.168.1.1 handing out 192.168.1.100-150), the listed PC (52:54:00:12:34:56)
and another PC of the office. Two settings are the test's own, because a test
writes nothing outside its temporary directory: ``boot.media`` (the demo medium
for the running SystemRescue's) and ``state_dir``.

Checks: the probe names the router; doctor passes; serve starts; the listed PC
gets our proxy offer (pxelinux.0, no address) beside the router's address, a real
DHCP client (udhcpc) gets its address from the router, and the menu fetched over
TFTP defaults to "Boot from local disk"; the other PC gets nothing from us and
the log says why, once.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from pxewizard.proto.dhcp import ip_str
from tests.net.dhcp_support import pxe_request, raw_exchange
from tests.support.netns import Netns, bridge_ns, link_netns, namespace
from tests.support.serving import REPO
from tests.support.tools import require, require_root

pytestmark = pytest.mark.net

SECTION = "## First boot on an office LAN"
PC, OTHER = "52:54:00:12:34:56", "52:54:00:99:99:01"
SERVER, ROUTER = "192.168.1.20", "192.168.1.1"


def walkthrough() -> tuple[dict, list[str]]:
    """(the Plan, the command lines) of the README's section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end > 0 else None]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)
    plans = [tomllib.loads(body) for lang, body in blocks if lang == "toml"]
    commands = [ln.strip() for lang, body in blocks if lang == "sh"
                for ln in body.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(plans) == 1 and commands, "the walk-through lost its Plan or its commands"
    return plans[0], commands


@contextlib.contextmanager
def office(tmp: Path) -> Iterator[dict[str, Netns]]:
    with bridge_ns() as br, namespace("srv") as srv, namespace("rtr") as rtr, \
            namespace("pc") as pc, namespace("oth") as oth:
        for port, ns, addr, mac in (("p1", srv, f"{SERVER}/24", None),
                                    ("p2", rtr, f"{ROUTER}/24", None),
                                    ("p3", pc, None, PC), ("p4", oth, None, OTHER)):
            link_netns(br, port, ns, "eth0", b_addr=addr, b_mac=mac)
            br.run("ip", "link", "set", port, "master", "br0")
        rtr.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                  "--interface=eth0", "--bind-interfaces", "--user=root",
                  "--dhcp-range=192.168.1.100,192.168.1.150,255.255.255.0,1h",
                  f"--dhcp-option=3,{ROUTER}", f"--dhcp-leasefile={tmp / 'router.leases'}",
                  stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not rtr.run("ss", "-Hlun", "sport = :67").stdout.strip():
            assert time.monotonic() < deadline, "dnsmasq (the office router) did not start"
            time.sleep(0.05)
        yield {"srv": srv, "pc": pc, "other": oth}


def _argv(line: str) -> list[str]:
    words = line.split()
    assert words[0] == "pxewizard", f"a README command that is not pxewizard: {line}"
    return [sys.executable, "-m", "pxewizard", *words[1:]]


def test_office_lan_walkthrough(tmp_path: Path) -> None:
    require_root()
    require("dnsmasq", "udhcpc", "tftp")
    plan, commands = walkthrough()
    assert plan["dhcp"]["mode"] == "proxy" and plan["dhcp"]["allowed_macs"] == [PC]
    assert "default" not in plan["boot"]  # the walk-through shows the local-boot default
    plan["boot"]["media"] = str(REPO / "examples" / "demo-media")
    plan["state_dir"] = str(tmp_path / "state")
    (tmp_path / "plan.toml").write_text(tomli_w.dumps(plan))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with office(tmp_path) as ns:
        srv = ns["srv"]
        serving = None
        for line in commands:
            argv = _argv(line)
            if argv[3] == "serve":
                serving = srv.popen(*argv, env=env, cwd=str(tmp_path), bufsize=0)
                out, deadline = b"", time.monotonic() + 40
                while b"ready: serving" not in out:
                    assert serving.poll() is None and time.monotonic() < deadline, out.decode()
                    if select.select([serving.stdout], [], [], 0.5)[0]:
                        out += os.read(serving.stdout.fileno(), 65536)
                continue
            r = srv.run(*argv, env=env, cwd=str(tmp_path), check=False, timeout=120)
            said = r.stdout + r.stderr
            assert r.returncode == 0, f"`{line}` failed:\n{said}"
            if argv[3] == "probe":
                assert ROUTER in said and "DHCP" in said, said
        assert serving is not None, "the walk-through never starts serve"

        # the listed PC: the router's address offer and our boot offer, no address from us
        replies = raw_exchange(ns["pc"], "eth0", pxe_request(PC, 0x51), 0x51, want=2, timeout=6)
        ours = [p for p in replies if p.server_id and ip_str(p.server_id) == SERVER]
        theirs = [p for p in replies if p.server_id and ip_str(p.server_id) == ROUTER]
        assert theirs and theirs[0].yiaddr, replies
        assert len(ours) == 1 and ours[0].yiaddr == 0 and ours[0].options[67] == b"pxelinux.0"
        # a real DHCP client on that PC gets its address from the router
        r = ns["pc"].run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "4", "-T", "2",
                         "-s", "/bin/true", check=False, timeout=40)
        assert "192.168.1.1" in r.stdout + r.stderr, r.stdout + r.stderr
        ns["pc"].run("ip", "addr", "add", "192.168.1.140/24", "dev", "eth0")
        menu = tmp_path / "menu"
        ns["pc"].run("tftp", SERVER, "-m", "binary", "-c", "get", "pxelinux.cfg/default",
                     str(menu))
        text = menu.read_text()
        assert "DEFAULT local\n" in text and "MENU LABEL Boot from local disk" in text, text

        # another PC of the office: the router answers, we do not, and the log says why
        for xid in (0x61, 0x62, 0x63):
            replies = raw_exchange(ns["other"], "eth0", pxe_request(OTHER, xid), xid,
                                   want=2, timeout=4)
            assert not [p for p in replies if p.server_id and ip_str(p.server_id) == SERVER]
        time.sleep(0.5)  # the JSONL log is written in batches
        log = (tmp_path / "state" / "events.jsonl").read_text()
        refused = [ln for ln in log.splitlines() if OTHER in ln and '"not_allowed"' in ln]
        assert len(refused) == 1, refused  # once a minute, not once per packet

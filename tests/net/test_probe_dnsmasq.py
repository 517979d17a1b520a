"""Look before serving, against a stock dnsmasq (pinging before it offers, as installed).

An idle dnsmasq pings the address it means to offer for 3 s (PING_WAIT) before its
first OFFER, and again once its ping cache (30 s) has expired: a probe that listens
less than that starts a second DHCP server on the segment. Full-mode ``serve``
beside it must refuse every time: beside a freshly started dnsmasq (three rounds,
a new process each) and beside one left idle past its ping cache.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.dhcp_support import dhcp_plan
from tests.support.netns import Netns, link_netns, namespace
from tests.support.serving import REPO
from tests.support.tools import require, require_root

pytestmark = pytest.mark.net

PING_CACHE_TIME = 30
"""dnsmasq's config.h: after this long idle it pings again before offering."""


@contextlib.contextmanager
def _segment() -> Iterator[tuple[Netns, Netns]]:
    with namespace("srv") as srv, namespace("dnsm") as dn:
        link_netns(srv, "pxe0", dn, "eth0", a_addr="10.99.0.1/24", b_addr="10.99.0.2/24")
        yield srv, dn


def _dnsmasq(dn: Netns, tmp: Path, tag: str) -> subprocess.Popen:
    # no --no-ping: the stock behaviour is what an office LAN runs
    p = dn.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                 "--interface=eth0", "--bind-interfaces", "--user=root",
                 "--dhcp-range=10.99.0.150,10.99.0.160,255.255.255.0,1h",
                 f"--dhcp-leasefile={tmp / f'{tag}.leases'}", f"--pid-file={tmp / f'{tag}.pid'}",
                 stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not dn.run("ss", "-Hlun", "sport = :67").stdout.strip():
        assert p.poll() is None and time.monotonic() < deadline, "dnsmasq did not start"
        time.sleep(0.05)
    return p


def _stop(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, 15)
    p.wait(10)


def _serve_full(srv: Netns, plan: Path) -> tuple[int, str, float]:
    t = time.monotonic()
    r = srv.run(sys.executable, "-m", "pxewizard", "serve", "--plan", str(plan), check=False,
                timeout=60, cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)))
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t


def _assert_refused(rc: int, out: str) -> None:
    assert rc == 2, f"full DHCP started beside dnsmasq (exit {rc}):\n{out}"
    assert "refusing to start full DHCP on pxe0" in out and "10.99.0.2" in out, out
    assert "ready: serving" not in out, out


def test_full_serve_refused_beside_a_fresh_dnsmasq(tmp_path: Path) -> None:
    require_root()
    require("dnsmasq")
    plan = dhcp_plan(tmp_path, mode="full")
    with _segment() as (srv, dn):
        for n in range(3):
            p = _dnsmasq(dn, tmp_path, f"fresh{n}")
            try:
                rc, out, took = _serve_full(srv, plan)
            finally:
                _stop(p)
            _assert_refused(rc, out)
            assert took < 30, f"round {n}: {took:.1f} s"


def test_full_serve_refused_beside_an_idle_dnsmasq(tmp_path: Path) -> None:
    require_root()
    require("dnsmasq")
    plan = dhcp_plan(tmp_path, mode="full")
    with _segment() as (srv, dn):
        p = _dnsmasq(dn, tmp_path, "idle")
        try:
            time.sleep(2)  # started, then idle: no client has asked anything
            for n in range(2):
                rc, out, _ = _serve_full(srv, plan)
                _assert_refused(rc, out)
                if n == 0:
                    time.sleep(PING_CACHE_TIME + 2)  # idle past its ping cache: it pings again
        finally:
            _stop(p)

"""What a test VM leaves when the wizard or `pxewizard lab` is killed outright.

QEMU is started under ``setpriv --pdeathsig KILL``, so it dies with the process that
started it; the tap (persistent) and the tc filters on the serving NIC stay, and the next
lab removes them: a tap whose maker (named in its alias) is gone, and the filters once no
other lab's tap is left. Taps of a running lab and taps without our alias stay.
"""

from __future__ import annotations

import subprocess
import sys
import time

from pxewizard.commands.lab import (TC_PREF, create_tap, sweep_stale_labs, tap_name,
                                    wire_tap_to_nic, with_death_signal)
from tests.support.netns import namespace, stub_interface
from tests.support.tools import require, require_root, running


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _links(ns) -> str:
    return ns.run("ip", "-o", "link", "show").stdout


def _lab_filters(ns, nic: str) -> str:
    return "".join(ns.run("tc", "filter", "show", "dev", nic, d).stdout
                   for d in ("ingress", "egress"))


def test_a_dead_labs_tap_and_filters_go_a_live_labs_stay() -> None:
    require_root()
    require("tc")
    with namespace("lab") as ns:
        stub_interface(ns, "pxe0", "10.99.0.1/24")
        dead, mine, foreign = tap_name(), tap_name(), tap_name()
        for tap in (dead, mine):
            create_tap(tap, None, ns.name)
            wire_tap_to_nic(tap, "pxe0", "52:54:00:00:00:0a", ns.name)
        ns.run("ip", "tuntap", "add", "dev", foreign, "mode", "tap")  # no alias: not ours
        # the first tap's maker died without cleaning up
        ns.run("ip", "link", "set", "dev", dead, "alias", f"pxwlab-pid-{_dead_pid()}")
        assert f"pref {TC_PREF}" in _lab_filters(ns, "pxe0")

        assert sweep_stale_labs("pxe0", ns.name) == [dead]
        links = _links(ns)
        assert f": {dead}:" not in links and f": {mine}:" in links and f": {foreign}:" in links
        assert f"pref {TC_PREF}" in _lab_filters(ns, "pxe0")  # the live lab's wiring stays

        # that lab dies too: its tap goes, and with no lab tap of ours left, the filters
        ns.run("ip", "link", "set", "dev", mine, "alias", f"pxwlab-pid-{_dead_pid()}")
        ns.run("ip", "link", "del", foreign)
        assert sweep_stale_labs("pxe0", ns.name) == [mine]
        assert "pxwlab" not in _links(ns)
        assert f"pref {TC_PREF}" not in _lab_filters(ns, "pxe0")
        assert sweep_stale_labs("pxe0", ns.name) == []  # nothing left: nothing done


def test_the_vm_process_dies_with_the_process_that_started_it() -> None:
    """``with_death_signal``: the starter is killed outright (SIGKILL, no cleanup of its
    own), and what it started under setpriv is killed by the kernel."""
    require("setpriv")
    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         f"p = subprocess.Popen({with_death_signal(['sleep', '300'])!r})\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(300)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        child = int(starter.stdout.readline())
        # setpriv sets the death signal, then execs: wait until it has (sleep runs)
        deadline = time.monotonic() + 10
        while _comm(child) != "sleep":
            assert time.monotonic() < deadline, f"the child is {_comm(child)!r}"
            time.sleep(0.01)
        starter.kill()
        starter.wait(10)
        deadline = time.monotonic() + 10
        while running(child):
            assert time.monotonic() < deadline, "the child outlived its starter"
            time.sleep(0.05)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(10)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""

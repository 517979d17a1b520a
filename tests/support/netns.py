"""Network namespaces and veth pairs that tests create and always remove.

Nothing here touches the host's own interfaces: every address lives inside a
namespace named ``pxwt-...`` that the fixture deletes in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


@dataclass
class Netns:
    """One namespace; run commands inside it."""

    name: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*args), check=check, capture_output=True, text=True,
                              timeout=timeout, **kw)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(self.cmd(*args), **kw)
        self.procs.append(p)
        return p

    def kill_all(self) -> None:
        """Stop the processes this namespace started, by PID (their process groups)."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs.clear()


def new_name(role: str) -> str:
    return f"pxwt-{role}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def namespace(role: str = "x") -> Iterator[Netns]:
    ns = Netns(new_name(role))
    sh("ip", "netns", "add", ns.name)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        ns.kill_all()
        sh("ip", "netns", "del", ns.name, check=False)


def link_netns(a: Netns, a_if: str, b: Netns, b_if: str, a_addr: str | None = None,
               b_addr: str | None = None, b_mac: str | None = None) -> None:
    """A veth pair between two namespaces, each end renamed and brought up."""
    tmp_a, tmp_b = f"v{secrets.token_hex(4)}", f"v{secrets.token_hex(4)}"
    sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    sh("ip", "link", "set", tmp_a, "netns", a.name)
    sh("ip", "link", "set", tmp_b, "netns", b.name)
    a.run("ip", "link", "set", tmp_a, "name", a_if)
    b.run("ip", "link", "set", tmp_b, "name", b_if)
    if b_mac:
        b.run("ip", "link", "set", b_if, "address", b_mac)
    for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
        if addr:
            ns.run("ip", "addr", "add", addr, "dev", ifname)
        ns.run("ip", "link", "set", ifname, "up")


def stub_interface(ns: Netns, name: str, addr: str) -> None:
    """An interface with an address inside ``ns`` and nothing behind it (a veth whose peer
    stays in the same namespace; the kernel here has no dummy driver)."""
    peer = f"v{secrets.token_hex(4)}"
    sh("ip", "link", "add", name, "netns", ns.name, "type", "veth", "peer", "name", peer,
       "netns", ns.name)
    ns.run("ip", "addr", "add", addr, "dev", name)
    ns.run("ip", "link", "set", peer, "up")
    ns.run("ip", "link", "set", name, "up")


@dataclass
class NetPair:
    """A server namespace and a client namespace joined by a veth pair."""

    server: Netns
    client: Netns
    server_if: str = "pxe0"
    client_if: str = "eth0"
    server_ip: str = "10.99.0.1"
    prefix: int = 24
    client_mac: str = "52:54:00:99:00:10"

    def client_address(self, addr: str = "10.99.0.10") -> str:
        """Give the client a static address (for TFTP/HTTP tests that skip DHCP)."""
        self.client.run("ip", "addr", "add", f"{addr}/{self.prefix}", "dev", self.client_if)
        return addr


@contextlib.contextmanager
def net_pair(server_ip: str = "10.99.0.1", prefix: int = 24, client_ip: str | None = None,
             client_mac: str = "52:54:00:99:00:10") -> Iterator[NetPair]:
    with namespace("srv") as srv, namespace("cli") as cli:
        link_netns(srv, "pxe0", cli, "eth0", a_addr=f"{server_ip}/{prefix}",
                   b_addr=f"{client_ip}/{prefix}" if client_ip else None, b_mac=client_mac)
        yield NetPair(server=srv, client=cli, server_ip=server_ip, prefix=prefix,
                      client_mac=client_mac)


@contextlib.contextmanager
def bridge_ns(ports: Sequence[str] = ()) -> Iterator[Netns]:
    """A namespace holding a bridge ``br0`` (STP off, forward delay 0)."""
    with namespace("br") as ns:
        ns.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
               "forward_delay", "0")
        ns.run("ip", "link", "set", "br0", "up")
        yield ns

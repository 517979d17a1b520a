"""Hypothesis properties the per-protocol unit tests do not already state.

Round trips (encode then decode gives the value back) for the DHCP packet
and its sub-option lists, ONC RPC calls with AUTH_SYS, the MOUNT and
portmapper lists, NFS attributes; the DHCP decision over a random crowd of
clients never hands one address to two of them; an NBD client stream gives
the same outputs however TCP cuts it; the HTTP Range parser and the file
tree only fail the ways their callers catch. The last two hold the inputs
the atheris harnesses (tests/fuzz/) found.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pxewizard.files import AccessDenied, FileTree, TreeError
from pxewizard.proto import mount3, nfs3, portmap
from pxewizard.proto.dhcp import (BootFiles, LeaseTable, MsgType, Packet, Policy, decide,
                                  decode, decode_suboptions, encode_suboptions, ip_int,
                                  mac_bytes, parse_user_class)
from pxewizard.proto.nbd import IHAVEOPT, REQUEST_MAGIC, NbdConnection
from pxewizard.proto.rpc import AuthFlavor, encode_auth_sys, encode_call, parse_call
from pxewizard.proto.xdr import Reader, Writer
from pxewizard.servers.http import RangeNotSatisfiable, parse_range

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
u8 = st.integers(0, 255)

# --- DHCP -------------------------------------------------------------------------------

option_codes = st.integers(1, 254).filter(lambda c: c not in (52, 53))
"""52 (overload) changes where options live and 53 must be one byte: both tested elsewhere."""


@st.composite
def dhcp_packets(draw: st.DrawFn) -> Packet:
    opts = draw(st.dictionaries(option_codes, st.binary(max_size=600), max_size=8))
    if draw(st.booleans()):
        opts[53] = bytes((draw(st.integers(1, 8)),))
    name = st.binary(max_size=60).map(lambda b: b.replace(b"\0", b"x"))
    return Packet(op=draw(st.sampled_from([1, 2])), htype=draw(u8), hlen=draw(st.integers(0, 16)),
                  hops=draw(u8), xid=draw(u32), secs=draw(u16), flags=draw(u16),
                  ciaddr=draw(u32), yiaddr=draw(u32), siaddr=draw(u32), giaddr=draw(u32),
                  chaddr=draw(st.binary(min_size=16, max_size=16)), sname=draw(name),
                  file=draw(name), options=opts)


@given(dhcp_packets())
def test_dhcp_packet_round_trip(p: Packet) -> None:
    """Any packet, long options included (split at 255 bytes, RFC 3396), decodes back to itself."""
    assert decode(p.encode(max_size=1 << 16)) == p


@given(st.dictionaries(st.integers(1, 254), st.binary(max_size=255), max_size=6))
def test_suboptions_round_trip(subs: dict[int, bytes]) -> None:
    assert decode_suboptions(encode_suboptions(subs), "x") == subs


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5))
def test_user_class_rfc3004_list_round_trip(items: list[bytes]) -> None:
    assert parse_user_class(b"".join(bytes((len(i),)) + i for i in items)) == items


POLICY = Policy(server_ip="10.99.0.1", network="10.99.0.0/24", range_start="10.99.0.100",
                range_end="10.99.0.105", boot=BootFiles())
MACS = [f"52:54:00:00:00:{i:02x}" for i in range(10)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9),
                          st.sampled_from([MsgType.DISCOVER, MsgType.REQUEST, MsgType.RELEASE,
                                           MsgType.DECLINE]),
                          st.integers(0, 6), st.integers(0, 900)), max_size=60))
def test_no_address_is_ever_bound_to_two_clients(steps: list[tuple[int, int, int, int]]) -> None:
    """Ten clients, a pool of six, random DISCOVER/REQUEST/RELEASE/DECLINE (asking for any
    pool address) with time passing: every ACKed address is held by that client alone."""
    table, now = LeaseTable(), 1_000_000.0
    acked: dict[int, tuple[str, float]] = {}  # ip -> (mac, lease end) of ACKs sent
    for mac_i, mt, want, dt in steps:
        now += dt
        mac = MACS[mac_i]
        ip = ip_int("10.99.0.100") + want
        opts: dict[int, bytes] = {53: bytes((mt,)), 50: ip.to_bytes(4, "big")}
        if mt == MsgType.REQUEST and want % 2:
            opts[54] = POLICY.server_ip.packed
        ciaddr = ip if mt == MsgType.RELEASE else 0
        d = decide(Packet(xid=mac_i, chaddr=mac_bytes(mac), ciaddr=ciaddr, options=opts),
                   POLICY, table, now)
        for op in d.ops:
            table.apply(op)
        if d.msg_out == "ACK" and d.yiaddr_int:
            a = d.yiaddr_int
            other = acked.get(a)
            assert other is None or other[0] == mac or other[1] <= now, \
                f"{a:#x} ACKed to {mac} while {other} holds it"
            # a client holds one address per interface: an ACK for another address means it
            # left the old one (INIT-REBOOT asking for a different address, RFC 2131 4.3.2)
            for old, (m, _end) in list(acked.items()):
                if m == mac and old != a:
                    del acked[old]
            acked[a] = (mac, now + POLICY.lease_time)
        if mt in (MsgType.RELEASE,):
            for a, (m, _end) in list(acked.items()):
                if m == mac and a == ciaddr:
                    del acked[a]
        holders = [le for le in table if le.active(now)]
        assert len({le.ip for le in holders}) == len(holders)


# --- ONC RPC, MOUNT, portmap, NFS ------------------------------------------------------------


@given(u32, u32, u32, u32, u32, st.lists(u32, max_size=16),
       st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255), st.binary(max_size=80))
def test_rpc_call_with_auth_sys_round_trip(xid: int, prog: int, proc: int, uid: int, gid: int,
                                           gids: list[int], machine: str, args: bytes) -> None:
    args = args + bytes((4 - len(args) % 4) % 4)
    rec = encode_call(xid, prog, 3, proc, args,
                      cred=(AuthFlavor.AUTH_SYS, encode_auth_sys(uid, gid, tuple(gids), machine)))
    call = parse_call(rec)
    assert (call.xid, call.prog, call.vers, call.proc) == (xid, prog, 3, proc)
    assert (call.cred.uid, call.cred.gid, call.cred.gids, call.cred.machine) == \
        (uid, gid, tuple(gids), machine)
    assert call.args.data[call.args.pos:] == args


paths = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)


@given(st.lists(st.tuples(paths, st.lists(paths, max_size=3)), max_size=5))
def test_mount_export_list_round_trip(exports: list[tuple[str, list[str]]]) -> None:
    assert mount3.parse_exports(Reader(mount3.encode_exports(exports))) == exports


@given(st.lists(st.tuples(paths, paths), max_size=5))
def test_mount_dump_list_round_trip(entries: list[tuple[str, str]]) -> None:
    assert mount3.parse_mountlist(Reader(mount3.encode_mountlist(entries))) == entries


@given(st.lists(st.tuples(u32, u32, st.sampled_from([6, 17]), u16), max_size=6))
def test_portmap_dump_round_trip(maps: list[tuple[int, int, int, int]]) -> None:
    table = portmap.PortmapTable([portmap.Mapping(*m) for m in maps])
    got = portmap.parse_dump(Reader(table.handle(portmap.PmapProc.DUMP, Reader(b""),
                                                 local=False) or b""))
    assert set(got) == table.mappings


times = st.tuples(u32, st.integers(0, 999_999_999))


@given(st.builds(nfs3.Fattr, type=st.integers(1, 7), mode=st.integers(0, 0o7777), nlink=u32,
                 uid=u32, gid=u32, size=st.integers(0, 2**64 - 1),
                 used=st.integers(0, 2**64 - 1), rdev=st.tuples(u32, u32),
                 fsid=st.integers(0, 2**64 - 1), fileid=st.integers(0, 2**64 - 1),
                 atime=times, mtime=times, ctime=times))
def test_nfs_fattr_round_trip(a: nfs3.Fattr) -> None:
    w = Writer()
    nfs3.push_post_op_attr(w, a)
    assert len(w) == 4 + nfs3.FATTR_SIZE
    assert nfs3.pull_post_op_attr(Reader(bytes(w))) == a


@given(st.builds(nfs3.Sattr, mode=st.none() | u32, uid=st.none() | u32, gid=st.none() | u32,
                 size=st.none() | st.integers(0, 2**64 - 1),
                 atime=st.none() | st.just("server") | times,
                 mtime=st.none() | st.just("server") | times))
def test_nfs_sattr_round_trip(s: nfs3.Sattr) -> None:
    w = Writer()
    nfs3.push_sattr(w, s)
    assert nfs3.pull_sattr(Reader(bytes(w))) == s


# --- NBD ---------------------------------------------------------------------------------------


def _nbd_outputs(stream: bytes, cuts: list[int]) -> list[object]:
    conn = NbdConnection({"archiso": 1 << 20})
    out: list[object] = list(conn.initiate())
    pos = 0
    for c in sorted(set(cuts)) + [len(stream)]:
        conn.receive_data(stream[pos:c])
        pos = c
        out.extend(conn.outputs())
    return out


@given(st.lists(st.tuples(u32, st.integers(0, 1 << 20), st.integers(0, 1 << 16)), max_size=6),
       st.lists(st.integers(1, 400), max_size=12))
def test_nbd_outputs_do_not_depend_on_how_tcp_cuts_the_stream(
        reads: list[tuple[int, int, int]], cuts: list[int]) -> None:
    go = struct.pack(">I", 7) + b"archiso" + struct.pack(">H", 0)
    stream = (struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, len(go)) + go
              + b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 0, h, o, n)
                         for h, o, n in reads))
    cuts = [c for c in cuts if c < len(stream)]
    assert _nbd_outputs(stream, cuts) == _nbd_outputs(stream, [])


# --- HTTP Range and the jail (inputs the fuzzers found) ------------------------------------------


@given(st.text(max_size=30), st.integers(0, 1 << 40))
def test_parse_range_fails_only_with_416(header: str, size: int) -> None:
    """Anything but RangeNotSatisfiable would escape the handler as a 500."""
    try:
        r = parse_range("bytes=" + header, size)
    except RangeNotSatisfiable:
        return
    assert r is None or 0 <= r[0] <= r[1] < size


@pytest.mark.parametrize("header", ["bytes=\u00b2-", "bytes=-\u00b9", "bytes=0-\u2075"])
def test_superscript_digits_are_not_a_range(header: str) -> None:
    """'²'.isdigit() is True but int('²') raises: found by tests/fuzz/fuzz_http.py."""
    assert parse_range(header, 100) is None


def test_a_link_loop_in_the_tree_is_refused_in_words(tmp_path: Path) -> None:
    """os.stat() of a link loop raises ELOOP: refused as 403, not a 500 (fuzz_http.py)."""
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(AccessDenied, match="loop"):
        FileTree([tmp_path]).resolve("/loop")


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["a", "..", ".", "", "link", "loop", "out", "sub", "%2e",
                                 "\\", "x" * 300]), max_size=6))
def test_resolve_fails_only_with_tree_errors_and_stays_inside(tmp_path: Path,
                                                              parts: list[str]) -> None:
    root = tmp_path / "root"
    if not root.exists():
        (root / "sub").mkdir(parents=True)
        (root / "a").write_text("a")
        os.chmod(root / "a", 0o644)
        (root / "link").symlink_to("sub/../a")
        (root / "loop").symlink_to("loop")
        (root / "out").symlink_to(tmp_path)
        (tmp_path / "secret").write_text("s")
    try:
        ref = FileTree([root]).resolve("/".join(parts))
    except TreeError:
        return
    assert ref.real is not None
    assert os.path.realpath(ref.real).startswith(os.path.realpath(root) + "/")


# --- one pxewizard per interface ---------------------------------------------------------------


def test_one_instance_per_interface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is held per interface (and network namespace); closing releases it; the
    refusal names the holder's PID and says what to do."""
    from pxewizard import serve
    from pxewizard.errors import PxeError

    monkeypatch.setattr(serve, "RUN_DIR", tmp_path)
    held = serve.lock_interface("pxe9")
    with pytest.raises(PxeError) as exc:
        serve.lock_interface("pxe9")
    assert f"another pxewizard (pid {os.getpid()})" in str(exc.value)
    assert f"kill {os.getpid()}" in str(exc.value.fix)
    other = serve.lock_interface("pxe8")  # another interface: independent
    os.close(held)
    again = serve.lock_interface("pxe9")  # released with the descriptor
    assert serve.lock_path("pxe9").read_text().strip() == str(os.getpid())
    os.close(again)
    os.close(other)

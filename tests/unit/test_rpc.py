"""ONC RPC (RFC 5531): call parsing, replies, TCP record marking, portmap and mount tables."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxewizard.proto import mount3 as m3
from pxewizard.proto import portmap as pm
from pxewizard.proto.rpc import (
    AcceptStat,
    AuthFlavor,
    AuthStat,
    RecordReader,
    RecordTooLarge,
    RpcDenied,
    encode_auth_sys,
    encode_call,
    error_reply,
    frame,
    parse_call,
    parse_reply,
    prog_mismatch_reply,
    success_reply,
)
from pxewizard.proto.xdr import Reader, Writer

# A real call as libnfs 4.0 sends it: MOUNT v3 EXPORT, AUTH_SYS uid 0 gid 0 machine "libnfs".
LIBNFS_EXPORT_CALL = bytes.fromhex(
    "12345678" "00000000" "00000002" "000186a5" "00000003" "00000005"
    "00000001" "0000001c" "00000000" "00000006" "6c69626e" "66730000" "00000000" "00000000"
    "00000000" "00000000" "00000000")


def test_parse_libnfs_call():
    c = parse_call(LIBNFS_EXPORT_CALL)
    assert (c.xid, c.prog, c.vers, c.proc) == (0x12345678, 100005, 3, 5)
    assert c.cred.flavor == AuthFlavor.AUTH_SYS
    assert (c.cred.uid, c.cred.gid, c.cred.machine, c.cred.gids) == (0, 0, "libnfs", ())
    assert c.args.eof()


def test_auth_sys_with_groups_and_auth_none():
    cred = (AuthFlavor.AUTH_SYS, encode_auth_sys(1000, 100, (4, 27), machine="pc"))
    c = parse_call(encode_call(7, 100003, 3, 1, b"\0\0\0\0", cred=cred))
    assert (c.cred.uid, c.cred.gid, c.cred.gids) == (1000, 100, (4, 27))
    assert c.args.pull_u32() == 0
    c = parse_call(encode_call(8, 100003, 3, 0))
    assert c.cred.flavor == AuthFlavor.AUTH_NONE and c.cred.uid is None


def test_denied_calls_carry_the_reply():
    with pytest.raises(RpcDenied) as e:
        parse_call(encode_call(9, 100003, 3, 0, rpcvers=3))
    rep = parse_reply(e.value.reply)
    assert rep.xid == 9 and not rep.accepted and rep.stat == 0  # RPC_MISMATCH
    with pytest.raises(RpcDenied) as e:
        parse_call(encode_call(10, 100003, 3, 0, cred=(6, b"gss")))
    rep = parse_reply(e.value.reply)
    assert not rep.accepted and rep.stat == 1 and rep.body.pull_u32() == AuthStat.AUTH_TOOWEAK
    bad_sys = (AuthFlavor.AUTH_SYS, encode_auth_sys(0, 0, tuple(range(17))))
    with pytest.raises(RpcDenied):
        parse_call(encode_call(11, 100003, 3, 0, cred=bad_sys))


@pytest.mark.parametrize("data", [b"", b"\0" * 7, struct.pack(">II", 1, 1) + b"\0" * 40,
                                  LIBNFS_EXPORT_CALL[:30]])
def test_not_a_call_is_valueerror(data):
    with pytest.raises(ValueError):
        parse_call(data)


def test_reply_builders():
    rep = parse_reply(success_reply(5, b"\0\0\0\1"))
    assert rep.accepted and rep.stat == 0 and rep.body.pull_u32() == 1
    for stat in (AcceptStat.PROG_UNAVAIL, AcceptStat.PROC_UNAVAIL, AcceptStat.GARBAGE_ARGS):
        rep = parse_reply(error_reply(6, stat))
        assert rep.accepted and rep.stat == stat and rep.body.eof()
    rep = parse_reply(prog_mismatch_reply(7, 3, 3))
    assert rep.stat == AcceptStat.PROG_MISMATCH and (rep.body.pull_u32(), rep.body.pull_u32()) \
        == (3, 3)


@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
       st.lists(st.integers(1, 50), min_size=1, max_size=30), st.integers(1, 4))
def test_record_marking_reassembles_any_split(records, cuts, nfrag):
    stream = b""
    for rec in records:  # each record split into nfrag fragments
        step = max(1, len(rec) // nfrag)
        pieces = [rec[i:i + step] for i in range(0, len(rec), step)] or [b""]
        for i, p in enumerate(pieces):
            last = 0x80000000 if i == len(pieces) - 1 else 0
            stream += struct.pack(">I", last | len(p)) + p
    rr = RecordReader(max_record=10_000)
    got = []
    pos = 0
    ci = 0
    while pos < len(stream):
        n = cuts[ci % len(cuts)]
        ci += 1
        got += rr.feed(stream[pos:pos + n])
        pos += n
    assert got == records
    assert rr.buffered() == 0


def test_record_too_large_is_refused_before_buffering():
    rr = RecordReader(max_record=1000)
    with pytest.raises(RecordTooLarge):
        rr.feed(struct.pack(">I", 0x80000000 | 5000))
    rr = RecordReader(max_record=1000)
    rr.feed(struct.pack(">I", 600) + b"x" * 600)  # first fragment fine
    with pytest.raises(RecordTooLarge):  # the sum of fragments is what counts
        rr.feed(struct.pack(">I", 0x80000000 | 600))
    assert frame(b"abc") == b"\x80\x00\x00\x03abc"


def test_portmap_table():
    t = pm.PortmapTable([pm.Mapping(100003, 3, pm.IPPROTO_TCP, 2049)])
    getport = pm.encode_set_args(100003, 3, pm.IPPROTO_TCP, 0)
    assert Reader(t.handle(pm.PmapProc.GETPORT, Reader(getport), local=False)).pull_u32() == 2049
    udp = pm.encode_set_args(100003, 3, pm.IPPROTO_UDP, 0)
    assert Reader(t.handle(pm.PmapProc.GETPORT, Reader(udp), local=False)).pull_u32() == 0
    # SET from the wire is refused, from this machine accepted
    set_args = pm.encode_set_args(100021, 4, pm.IPPROTO_TCP, 4045)
    assert not Reader(t.handle(pm.PmapProc.SET, Reader(set_args), local=False)).pull_bool()
    assert Reader(t.handle(pm.PmapProc.SET, Reader(set_args), local=True)).pull_bool()
    dump = pm.parse_dump(Reader(t.handle(pm.PmapProc.DUMP, Reader(b""), local=False)))
    assert pm.Mapping(100021, 4, pm.IPPROTO_TCP, 4045) in dump
    assert pm.Mapping(100000, 2, pm.IPPROTO_UDP, 111) in dump
    assert t.handle(pm.PmapProc.CALLIT, Reader(b""), local=False) is None
    assert t.handle(pm.PmapProc.NULL, Reader(b""), local=False) == b""


def test_mount_table_transitions():
    t = m3.MountTable()
    assert t.mount("10.0.0.5", "/srv") is True
    assert t.mount("10.0.0.5", "/srv") is False  # remount: no new session
    assert t.entries() == [("10.0.0.5", "/srv")]
    assert t.unmount("10.0.0.5", "/other") is False
    t.mount("10.0.0.5", "/b")
    assert sorted(t.unmount_all("10.0.0.5")) == ["/b", "/srv"]
    assert t.entries() == []
    with pytest.raises(m3.MountError):
        t._go("h", "/x", "umnt")


def test_mount_codecs_round_trip():
    ok = m3.parse_mnt_result(Reader(m3.encode_mnt_ok(b"\1" * 20)))
    assert ok.status == 0 and ok.fh == b"\1" * 20 and ok.flavors == (1, 0)
    assert m3.parse_mnt_result(Reader(m3.encode_mnt_error(m3.MountStat.NOENT))).status == 2
    ex = [("/srv/a", ["*"]), ("/srv/b", ["10.0.0.0/24", "host"])]
    assert m3.parse_exports(Reader(m3.encode_exports(ex))) == ex
    ml = [("10.0.0.1", "/srv/a")]
    assert m3.parse_mountlist(Reader(m3.encode_mountlist(ml))) == ml
    with pytest.raises(ValueError):
        m3.pull_dirpath(Reader(bytes(Writer().push_string("x" * 1025))))


def test_many_tiny_fragments_are_refused():
    rr = RecordReader(max_record=1 << 20, max_fragments=100)
    with pytest.raises(RecordTooLarge):
        rr.feed((struct.pack(">I", 1) + b"x") * 200)

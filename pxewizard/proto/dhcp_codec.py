"""BOOTP/DHCP packet codec (sans-I/O), plus the PXE and iPXE option helpers.

``decode(bytes) -> Packet`` and ``Packet.encode() -> bytes``. Malformed input
raises ``ValueError`` with words; the adapter catches it in one place and
publishes ``PacketDropped``.

Addresses are kept as host-order ``int`` inside packets (cheap to compare and
to do pool arithmetic on); :func:`ip_str` / :func:`ip_int` convert at the edges.

Import it as :mod:`pxewizard.proto.dhcp`, which also holds the decision and
the lease table.
"""

from __future__ import annotations

import functools
import socket
import struct
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC = b"\x63\x82\x53\x63"
"""RFC 2131 §3: the options field starts with this cookie."""

HEADER = struct.Struct("!BBBBIHHIIII16s64s128s")
"""RFC 2131 §2 fixed BOOTP header (236 bytes) before the cookie."""

BOOTREQUEST, BOOTREPLY = 1, 2
FLAG_BROADCAST = 0x8000
MIN_REPLY = 300
"""BOOTP minimum (RFC 1542 §3.3): some old PXE ROMs drop shorter replies."""
MAX_REPLY_DEFAULT = 576
"""RFC 2131 §2: without option 57 a client only promises to accept 576-byte IP datagrams."""


class MsgType(IntEnum):
    """Option 53 values (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


_MSG_NAMES = {t.value: t.name for t in MsgType}


class Opt(IntEnum):
    """Option codes we read or write (RFC 2132 unless noted)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOSTNAME = 12
    DOMAIN = 15
    BROADCAST = 28
    VENDOR = 43
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MSG_TYPE = 53
    SERVER_ID = 54
    PARAM_LIST = 55
    MESSAGE = 56
    MAX_SIZE = 57
    T1 = 58
    T2 = 59
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    TFTP_SERVER = 66
    BOOTFILE = 67
    USER_CLASS = 77  # RFC 3004
    RELAY_AGENT = 82  # RFC 3046
    CLIENT_ARCH = 93  # RFC 4578
    CLIENT_NDI = 94  # RFC 4578
    UUID = 97  # RFC 4578
    IPXE = 175  # iPXE's encapsulated options
    END = 255


class PxeSub(IntEnum):
    """Option 43 sub-options for PXEClient (PXE 2.1 spec §2.4.5)."""

    DISCOVERY_CONTROL = 6
    BOOT_SERVERS = 8
    BOOT_MENU = 9
    MENU_PROMPT = 10
    BOOT_ITEM = 71


DISCOVERY_USE_BOOTFILE = 8
"""Discovery control bit 3: boot from the file name in this offer, no boot server discovery."""

ARCH_NAMES: dict[int, str] = {
    0: "BIOS", 1: "NEC PC98", 2: "EFI Itanium", 3: "DEC Alpha", 4: "Arc x86", 5: "Intel Lean",
    6: "EFI IA32", 7: "EFI x64", 8: "EFI Xscale", 9: "EFI x64", 10: "EFI ARM32",
    11: "EFI ARM64", 12: "PowerPC OF", 13: "PowerPC ePAPR", 14: "POWER OPAL",
    15: "EFI x86 HTTP", 16: "EFI x64 HTTP", 17: "EFI EBC HTTP", 18: "EFI ARM32 HTTP",
    19: "EFI ARM64 HTTP", 20: "BIOS HTTP", 21: "ARM32 uboot", 22: "ARM64 uboot",
    23: "ARM uboot HTTP", 24: "RISC-V 32 UEFI", 25: "RISC-V 32 UEFI HTTP",
    26: "RISC-V 64 UEFI", 27: "RISC-V 64 UEFI HTTP",
}
"""RFC 4578 §2.1 and the IANA registry of processor architecture types."""


def arch_name(arch: int | None) -> str:
    """Option 93 in words; ``arch 42`` for values nobody registered."""
    if arch is None:
        return ""
    return ARCH_NAMES.get(arch, f"arch {arch}")


@functools.lru_cache(maxsize=16384)
def ip_str(ip: int) -> str:
    """``0x0a000001`` -> ``"10.0.0.1"``. Memoised (a DHCP exchange spells its addresses
    about eight times between decision, reply and events; a pool's worth of them stays
    cached): 66 ns a call against 290 ns."""
    return socket.inet_ntoa(ip.to_bytes(4, "big"))


def ip_int(ip: str | object) -> int:
    return int.from_bytes(socket.inet_aton(str(ip)), "big")


def mac_str(chaddr: bytes, hlen: int = 6) -> str:
    return chaddr[: min(hlen, 16)].hex(":")


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def _ip_list(ips: list[int] | tuple[int, ...]) -> bytes:
    return b"".join(i.to_bytes(4, "big") for i in ips)


# --- option field parsing -----------------------------------------------------------


def parse_options(data: bytes, into: dict[int, bytes], where: str) -> None:
    """Walk one options area (RFC 2132 §2), appending each option's value to ``into``.

    Repeated options are concatenated (RFC 3396 §7). A length running past the
    end of the area raises ValueError; a missing End (255) is tolerated, as
    every deployed server does.
    """
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return
        if i + 1 >= n:
            raise ValueError(f"option {code} in {where} has no length byte")
        ln = data[i + 1]
        end = i + 2 + ln
        if end > n:
            raise ValueError(f"option {code} in {where} claims {ln} bytes but only "
                             f"{n - i - 2} remain")
        if code in into:
            into[code] += data[i + 2 : end]
        else:
            into[code] = data[i + 2 : end]
        i = end


@dataclass(slots=True)
class Packet:
    """One BOOTP/DHCP message. Options keep their raw bytes; properties decode them."""

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: int = 0
    yiaddr: int = 0
    siaddr: int = 0
    giaddr: int = 0
    chaddr: bytes = b"\0" * 16
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)
    """Option code -> value, in insertion order (the encoder writes them in this order)."""

    # --- decoded views -------------------------------------------------------------

    @property
    def mac(self) -> str:
        return mac_str(self.chaddr, self.hlen)

    @property
    def msg_type(self) -> int | None:
        v = self.options.get(53)
        return v[0] if v else None

    @property
    def msg_name(self) -> str:
        t = self.msg_type
        if t is None:
            return "BOOTP"
        return _MSG_NAMES.get(t) or f"type {t}"

    def _ip_opt(self, code: int) -> int | None:
        v = self.options.get(code)
        if v is None:
            return None
        if len(v) != 4:
            raise ValueError(f"option {code} must be 4 bytes, got {len(v)}")
        return int.from_bytes(v, "big")

    @property
    def requested_ip(self) -> int | None:
        return self._ip_opt(50)

    @property
    def server_id(self) -> int | None:
        return self._ip_opt(54)

    def ip_list(self, code: int) -> list[int]:
        v = self.options.get(code, b"")
        if len(v) % 4:
            raise ValueError(f"option {code} length {len(v)} is not a multiple of 4")
        return [int.from_bytes(v[i : i + 4], "big") for i in range(0, len(v), 4)]

    def text(self, code: int) -> str:
        """An option as text (NUL-terminated strings are common: strip the NULs)."""
        return self.options.get(code, b"").rstrip(b"\0").decode("utf-8", "replace")

    @property
    def vendor_class(self) -> str:
        return self.text(60)

    @property
    def hostname(self) -> str:
        return self.text(12)

    @property
    def arch(self) -> int | None:
        """Option 93 (RFC 4578 §2.1): a list of 16-bit types; the first one is the client's."""
        v = self.options.get(93)
        if v is None:
            return None
        if len(v) < 2 or len(v) % 2:
            raise ValueError(f"option 93 (client architecture) has odd length {len(v)}")
        return int.from_bytes(v[:2], "big")

    @property
    def user_classes(self) -> list[bytes]:
        return parse_user_class(self.options.get(77, b""))

    @property
    def is_ipxe(self) -> bool:
        """iPXE says so by user class ``iPXE`` (option 77) or by sending option 175."""
        return 175 in self.options or b"iPXE" in self.user_classes

    @property
    def param_list(self) -> bytes:
        return self.options.get(55, b"")

    @property
    def max_size(self) -> int:
        v = self.options.get(57)
        if v is None or len(v) != 2:
            return MAX_REPLY_DEFAULT
        return max(MAX_REPLY_DEFAULT, int.from_bytes(v, "big"))

    @property
    def pxe_vendor(self) -> dict[int, bytes]:
        """Option 43 decoded as PXE sub-options (only meaningful for PXEClient)."""
        v = self.options.get(43)
        return decode_suboptions(v, "option 43") if v else {}

    @property
    def relay_agent(self) -> dict[int, bytes]:
        """Option 82 sub-options (RFC 3046 §2.0: 1 circuit id, 2 remote id)."""
        v = self.options.get(82)
        return decode_suboptions(v, "option 82") if v else {}

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    # --- encoding --------------------------------------------------------------------

    def encode(self, max_size: int = 1500) -> bytes:
        """Serialize; long options are split (RFC 3396), the result padded to 300 bytes.

        Options that do not fit in ``max_size`` (the client's option 57, as an
        IP datagram size) are dropped from the end; the caller orders them by
        importance.
        """
        head = pack_header(self.op, self.htype, self.hlen, self.hops, self.xid, self.secs,
                           self.flags, self.ciaddr, self.yiaddr, self.siaddr, self.giaddr,
                           self.chaddr, self.sname, self.file)
        return assemble(head, [encode_option(c, v) for c, v in self.options.items()], max_size)


def pack_header(op: int, htype: int, hlen: int, hops: int, xid: int, secs: int, flags: int,
                ciaddr: int, yiaddr: int, siaddr: int, giaddr: int, chaddr: bytes,
                sname: bytes = b"", file: bytes = b"") -> bytes:
    """The 236-byte fixed header (RFC 2131 §2); sname/file NUL-terminated and cut to fit."""
    return HEADER.pack(op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
                       chaddr.ljust(16, b"\0")[:16], sname[:63].ljust(64, b"\0"),
                       file[:127].ljust(128, b"\0"))


def assemble(head: bytes, chunks: list[bytes], max_size: int = 1500) -> bytes:
    """Header + cookie + encoded options + End, padded to 300 bytes (RFC 1542 §3.3).

    Options that would push the datagram past ``max_size`` (the client's option
    57, counted as an IP datagram: 28 bytes of IP and UDP headers) are left out;
    callers list them by importance.
    """
    body = b"".join(chunks)
    room = max_size - 28 - len(head) - 5  # option bytes between the cookie and End
    if len(body) > room:
        head, body = _overflow(head, chunks, room)
    out = head + MAGIC + body + b"\xff"
    if len(out) < MIN_REPLY:
        out += bytes(MIN_REPLY - len(out))
    return out


_SNAME, _FILE = slice(44, 108), slice(108, 236)


def _overflow(head: bytes, chunks: list[bytes], room: int) -> tuple[bytes, bytes]:
    """Options that do not fit the options field: into empty file/sname, else left out.

    RFC 2131 §4.1 / RFC 2132 §9.3: with option 52 (overload) the file field (1)
    and then the sname field (2) carry options too, each ended by End. Only
    fields the reply leaves empty are used; options still left over are
    dropped, later ones first (callers order them by importance).
    """
    fields = [f for f in (_FILE, _SNAME) if not any(head[f])]
    if fields:
        room -= 3  # option 52 itself
    parts: list[list[bytes]] = [[] for _ in range(1 + len(fields))]
    free = [room] + [f.stop - f.start - 1 for f in fields]  # each field keeps 1 byte for End
    for chunk in chunks:
        for i, left in enumerate(free):
            if len(chunk) <= left:
                parts[i].append(chunk)
                free[i] -= len(chunk)
                break
    out, flag = bytearray(head), 0
    for f, part in zip(fields, parts[1:]):
        if part:
            out[f] = (b"".join(part) + b"\xff").ljust(f.stop - f.start, b"\0")
            flag |= 1 if f == _FILE else 2
    body = b"".join(parts[0])
    return (bytes(out), body + bytes((52, 1, flag))) if flag else (head, body)


def encode_option(code: int, val: bytes) -> bytes:
    """One option, split into 255-byte pieces when longer (RFC 3396 §5)."""
    if len(val) <= 255:
        return bytes((code, len(val))) + val
    return b"".join(bytes((code, len(val[i : i + 255]))) + val[i : i + 255]
                    for i in range(0, len(val), 255))


def decode(data: bytes) -> Packet:
    """Parse one datagram. Raises ValueError on anything malformed, saying what.

    Overloaded ``file``/``sname`` (option 52, RFC 2132 §9.3) are read after the
    options field, file first then sname (RFC 2131 §4.1). Option 52 found again
    inside an overloaded field is an option loop and is refused.
    """
    n = len(data)
    if n < HEADER.size:
        raise ValueError(f"truncated: {n} bytes, a BOOTP header needs {HEADER.size}")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise ValueError(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise ValueError(f"hardware address length {hlen} exceeds 16")
    options: dict[int, bytes] = {}
    if n > HEADER.size:
        if n < HEADER.size + 4 or data[HEADER.size : HEADER.size + 4] != MAGIC:
            raise ValueError("no DHCP magic cookie after the BOOTP header")
        parse_options(data[HEADER.size + 4 :], options, "options")
    overload = options.get(52)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise ValueError(f"option 52 (overload) has bad value {overload.hex()}")
        extra: dict[int, bytes] = {}
        if overload[0] & 1:
            parse_options(file, extra, "file field")
            file = b""
        if overload[0] & 2:
            parse_options(sname, extra, "sname field")
            sname = b""
        if 52 in extra:
            raise ValueError("option 52 (overload) inside an overloaded field: option loop")
        for code, val in extra.items():
            prev = options.get(code)
            options[code] = val if prev is None else prev + val
    if 53 in options and len(options[53]) != 1:
        raise ValueError(f"option 53 (message type) has length {len(options[53])}, must be 1")
    return Packet(op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs, flags=flags,
                  ciaddr=ciaddr, yiaddr=yiaddr, siaddr=siaddr, giaddr=giaddr,
                  chaddr=chaddr, sname=sname.split(b"\0", 1)[0] if sname[:1] != b"\0" else b"",
                  file=file.split(b"\0", 1)[0] if file[:1] != b"\0" else b"",
                  options=options)


# --- sub-option helpers (43, 82, 175) and user class (77) ----------------------------


def decode_suboptions(data: bytes, where: str) -> dict[int, bytes]:
    """Code/length/value sub-options (option 43 for PXE, 82, 175); ValueError if broken."""
    out: dict[int, bytes] = {}
    parse_options(data, out, where)
    return out


def encode_suboptions(subs: dict[int, bytes], end: bool = True) -> bytes:
    """Sub-options in order; PXE option 43 ends with 255 (PXE 2.1 §2.4.5)."""
    out = b"".join(bytes((c, len(v))) + v for c, v in subs.items())
    return out + b"\xff" if end else out


def parse_user_class(v: bytes) -> list[bytes]:
    """Option 77: RFC 3004 length-prefixed list, or one plain string.

    QEMU's iPXE ROM sends the 4 raw bytes ``iPXE`` with no length prefix; as a
    list that would read as a 105-byte item running past the end, so anything
    that does not parse as a list exactly is taken as one plain string.
    """
    if not v:
        return []
    items: list[bytes] = []
    i = 0
    while i < len(v):
        ln = v[i]
        if ln == 0 or i + 1 + ln > len(v):
            return [v]
        items.append(v[i + 1 : i + 1 + ln])
        i += 1 + ln
    return items


def arch_from_vendor_class(vc: str) -> int | None:
    """``PXEClient:Arch:00007:UNDI:003010`` -> 7 (when option 93 is missing)."""
    parts = vc.split(":")
    if len(parts) >= 3 and parts[1] == "Arch" and parts[2].isdigit():
        return int(parts[2])
    return None

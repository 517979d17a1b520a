"""DHCP, sans-I/O: the codec, the decision and the in-memory lease table in one namespace.

- :mod:`.dhcp_codec`: ``decode(bytes) -> Packet``, ``Packet.encode()``; malformed input
  raises ``ValueError``.
- :mod:`.dhcp_decide`: ``decide(request, policy, leases, now, port=67) -> Decision``, a pure
  function; the :class:`Policy` is what servers get instead of the Plan.
- :mod:`.dhcp_leases`: :class:`LeaseTable`, the in-memory table the decision reads
  (``servers/leases.py`` adds SQLite persistence on top).
"""

from __future__ import annotations

from .dhcp_codec import (ARCH_NAMES, FLAG_BROADCAST, MsgType, Opt, Packet, PxeSub,
                         arch_from_vendor_class, arch_name, decode, decode_suboptions,
                         encode_option, encode_suboptions, ip_int, ip_str, mac_bytes, mac_str,
                         parse_user_class)
from .dhcp_decide import (BootFiles, Decision, Destination, LeaseInfo, LeaseOp, LeaseState,
                          LeaseView, Mode, Policy, Pool, Reservation, decide)
from .dhcp_leases import LeaseTable

__all__ = [
    "ARCH_NAMES", "FLAG_BROADCAST", "BootFiles", "Decision", "Destination", "LeaseInfo",
    "LeaseOp", "LeaseState", "LeaseTable", "LeaseView", "Mode", "MsgType", "Opt", "Packet",
    "Policy", "Pool", "PxeSub", "Reservation", "arch_from_vendor_class", "arch_name", "decide",
    "decode", "decode_suboptions", "encode_option", "encode_suboptions", "ip_int", "ip_str",
    "mac_bytes", "mac_str", "parse_user_class",
]

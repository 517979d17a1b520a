"""Which capabilities `serve` keeps for which Plan, and why (pure: no system call)."""

from __future__ import annotations

from pxewizard.plan import plan_from_dict
from pxewizard.privileges import CAPS, START_CAPS, mask, names
from pxewizard.serve import kept_capabilities

BASE = {"interface": "pxe0", "server_ip": "10.99.0.1"}


def test_proxy_tftp_http_keep_nothing() -> None:
    assert kept_capabilities(plan_from_dict(BASE)) == {}


def test_full_dhcp_keeps_net_admin_for_neighbour_entries() -> None:
    plan = plan_from_dict({**BASE, "dhcp": {"mode": "full", "range_start": "10.99.0.100",
                                            "range_end": "10.99.0.110"}})
    keep = kept_capabilities(plan)
    assert set(keep) == {"CAP_NET_ADMIN"} and "SIOCSARP" in keep["CAP_NET_ADMIN"]


def test_nfs_rw_keeps_identity_switching_and_root_only_with_no_root_squash() -> None:
    ro = plan_from_dict({**BASE, "nfs": {"enabled": True, "exports": [{"path": "/srv"}]}})
    assert set(kept_capabilities(ro)) == {"CAP_DAC_READ_SEARCH", "CAP_NET_BIND_SERVICE"}
    sq = plan_from_dict({**BASE, "nfs": {"enabled": True, "portmap": False,
                                         "exports": [{"path": "/srv", "rw": True}]}})
    assert set(kept_capabilities(sq)) == {"CAP_DAC_READ_SEARCH", "CAP_SETUID", "CAP_SETGID"}
    nrs = plan_from_dict({**BASE, "nfs": {"enabled": True, "portmap": False, "exports": [
        {"path": "/srv", "rw": True, "squash": "no_root_squash"}]}})
    assert {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"} <= set(kept_capabilities(nrs))
    assert "CAP_SYS_ADMIN" not in kept_capabilities(nrs)


def test_every_reason_is_words_and_masks_round_trip() -> None:
    for why in START_CAPS.values():
        assert len(why) > 20
    assert names(mask(["CAP_NET_ADMIN", "CAP_SETUID"])) == ["CAP_SETUID", "CAP_NET_ADMIN"]
    assert mask(["CAP_NET_ADMIN"]) == 1 << CAPS["CAP_NET_ADMIN"] == 1 << 12

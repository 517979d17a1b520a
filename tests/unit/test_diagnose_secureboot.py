"""The Secure Boot refusal finding, from the recorded OVMF + syslinux.efi boot cut short."""

from __future__ import annotations

import dataclasses

import pytest

from pxewizard.insight.session import diagnose_events
from pxewizard.events import DhcpExchange, TransferDone
from tests.unit.test_diagnose import FULL, MAC, load

pytestmark = pytest.mark.unit


def _until_loader() -> list:
    """The healthy UEFI boot up to the end of the syslinux.efi transfer."""
    evs = load("uefi-ovmf-syslinux-ok")
    end = next(i for i, e in enumerate(evs)
               if isinstance(e, TransferDone) and e.path.endswith("syslinux.efi"))
    return evs[:end + 1]


@pytest.mark.parametrize("arch,vendor", [(7, "PXEClient:Arch:00007:UNDI:003000"),
                                         (16, "HTTPClient:Arch:00016:UNDI:003001")])
def test_firmware_dhcp_again_after_unsigned_loader(arch: int, vendor: str) -> None:
    evs = _until_loader()
    first = next(e for e in evs if isinstance(e, DhcpExchange))
    again = dataclasses.replace(first, ts=evs[-1].ts + 1.5, arch=arch, vendor_class=vendor,
                                xid=first.xid + 1)
    _snap, found = diagnose_events([*evs, again], FULL, now=again.ts + 1)
    (f,) = [f for f in found if f.rule == "secure-boot-refused"]
    assert f.client == MAC and "Secure Boot" in f.title and "unsigned" in f.title
    assert "boot.secure_boot" in f.fix and "turn Secure Boot off" in f.fix
    assert "started DHCP again" in f.cause and again in f.evidence


def test_nothing_more_after_unsigned_loader() -> None:
    evs = _until_loader()
    _snap, found = diagnose_events(evs, FULL, now=evs[-1].ts + 3)
    assert not [f for f in found if f.rule == "secure-boot-refused"]  # too early to say
    _snap, found = diagnose_events(evs, FULL, now=evs[-1].ts + 30)
    (f,) = [f for f in found if f.rule == "secure-boot-refused"]
    assert "asked for nothing more" in f.cause


def test_syslinux_own_dhcp_is_not_a_refusal() -> None:
    _snap, found = diagnose_events(load("uefi-ovmf-syslinux-ok"), FULL)
    assert not [f for f in found if f.rule == "secure-boot-refused"]

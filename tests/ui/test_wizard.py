"""Walk the wizard with keys only, on fake detection, and check the Plan that comes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pxewizard.plan import DhcpMode, Transport, load_plan
from pxewizard.units import size_text
from pxewizard.screens.console import foreign_chars

from .fakes import FakeDetector, seen_server
from .helpers import screen_text, wait_for, wait_text

SIZE = (80, 25)


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


def on_step(app: Any, step: str) -> bool:
    return getattr(app.screen, "STEP", "") == step


async def next_to(pilot: Any, step: str) -> None:
    """Press ctrl+n and wait until ``step`` is shown (and its workers have settled)."""
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: on_step(pilot.app, step), what=f"step {step}")
    await pilot.pause()


def assert_console_safe(app: Any) -> None:
    text = screen_text(app)
    assert not foreign_chars(text), f"not in the VGA font: {foreign_chars(text)}\n{text}"


async def to_interface(pilot: Any, name: str = "eth0") -> None:
    """From Preflight to the Interface screen with ``name`` highlighted."""
    app = pilot.app
    await wait_for(pilot, lambda: app.state.host is not None, what="preflight facts")
    assert_console_safe(app)
    await next_to(pilot, "interface")
    await wait_for(pilot, lambda: app.state.interfaces is not None, what="interfaces")
    names = [i.name for i in app.state.interfaces]
    screen = app.screen
    while screen.selected().name != name:
        await pilot.press("up" if names.index(screen.selected().name) > names.index(name)
                          else "down")
    assert_console_safe(app)


async def to_dhcp_mode(pilot: Any, name: str = "eth0") -> None:
    await to_interface(pilot, name)
    await next_to(pilot, "dhcp_scan")
    await wait_for(pilot, lambda: pilot.app.draft.servers_seen is not None
                   and not pilot.app.screen.scanning, what="scan")
    assert_console_safe(pilot.app)
    await next_to(pilot, "dhcp_mode")
    assert_console_safe(pilot.app)


async def choose_radio(pilot: Any, set_id: str, index: int) -> None:
    """Focus a RadioSet, move to button ``index`` with arrows, press enter."""
    from textual.widgets import RadioSet

    rs = pilot.app.screen.query_one(f"#{set_id}", RadioSet)
    assert rs.has_focus
    current = rs._selected if rs._selected is not None else 0
    for _ in range(abs(index - current)):
        await pilot.press("down" if index > current else "up")
    await pilot.press("enter")
    await pilot.pause()


async def from_mode_to_review(pilot: Any, transport_index: int = 0,
                              copytoram: bool | None = None) -> None:
    await next_to(pilot, "media")
    await wait_for(pilot, lambda: pilot.app.state.media_found is not None, what="media")
    assert_console_safe(pilot.app)
    await next_to(pilot, "transport")
    if transport_index:
        await choose_radio(pilot, "transport", transport_index)
    if copytoram is False:
        await pilot.press("tab", "space")
    assert_console_safe(pilot.app)
    await next_to(pilot, "review")
    assert_console_safe(pilot.app)


async def test_full_dhcp_on_a_silent_segment(wizard: Any) -> None:
    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        text = screen_text(app)
        assert "(*) full DHCP" in text  # preselected: nobody answered
        assert "192.168.50.100" in text and "192.168.50.199" in text
        await from_mode_to_review(pilot)
        plan = app.state.plan
        assert plan is not None
        assert plan.interface == "eth0" and str(plan.server_ip) == "192.168.50.2"
        d = plan.dhcp
        assert d.mode is DhcpMode.full
        assert (str(d.range_start), str(d.range_end)) == ("192.168.50.100", "192.168.50.199")
        assert str(d.router) == "192.168.50.1" and [str(x) for x in d.dns] == ["192.168.50.1"]
        assert d.lease_time == 3600 and not d.override_existing_server
        assert plan.boot.transport is Transport.http
        assert str(plan.boot.media) == "/run/archiso/bootmnt"
        assert "DHCP full: 192.168.50.100 - 192.168.50.199" in screen_text(app)


async def test_pool_avoids_our_address_and_the_router() -> None:
    from ipaddress import IPv4Address, IPv4Network

    from pxewizard.screens.draft import suggest_pool

    net = IPv4Network("10.1.2.0/24")
    a, z = suggest_pool(net, [IPv4Address("10.1.2.150"), IPv4Address("10.1.2.1")])
    assert not int(a) <= int(IPv4Address("10.1.2.150")) <= int(z)
    assert a in net and z in net and int(z) - int(a) + 1 >= 50
    a, z = suggest_pool(IPv4Network("10.9.0.0/28"), [IPv4Address("10.9.0.1")])
    assert IPv4Address("10.9.0.1") < a <= z < IPv4Address("10.9.0.15")


async def test_proxy_preselected_when_a_server_answered(wizard: Any) -> None:
    det = FakeDetector(servers=[seen_server()])
    app = wizard(det)
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot)
        await next_to(pilot, "dhcp_scan")
        await wait_for(pilot, lambda: app.draft.servers_seen is not None, what="scan")
        text = screen_text(app)
        assert "1 DHCP server(s) answered on eth0" in text
        assert "DHCP 192.168.50.1 (52:54:00:00:00:01)" in text
        assert "offered 192.168.50.57" in text
        await next_to(pilot, "dhcp_mode")
        assert "(*) proxyDHCP" in screen_text(app)
        await from_mode_to_review(pilot)
        assert app.state.plan is not None and app.state.plan.dhcp.mode is DhcpMode.proxy
        assert det.probes == [("eth0", 0.2)]


async def test_none_shows_what_the_existing_server_needs(wizard: Any) -> None:
    app = wizard(FakeDetector(servers=[seen_server()]))
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await choose_radio(pilot, "mode", 2)
        text = app.screen.query_one("#mode-help").render()
        plain = str(text)
        for snippet in ("next-server 192.168.50.2;", 'filename "pxelinux.0";',
                        # the Plan's real path (the tree serves efi64/syslinux.efi)
                        "dhcp-boot=tag:!ipxe,tag:efi64,efi64/syslinux.efi,,192.168.50.2",
                        '"next-server": "192.168.50.2", "boot-file-name": "efi64/syslinux.efi"',
                        "next-server (siaddr, option 66): 192.168.50.2"):
            assert snippet in plain, snippet
        assert_console_safe(app)
        await from_mode_to_review(pilot)
        assert app.state.plan is not None and app.state.plan.dhcp.mode is DhcpMode.none


async def test_full_dhcp_beside_another_server_needs_words(wizard: Any) -> None:
    app = wizard(FakeDetector(servers=[seen_server()]))
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await choose_radio(pilot, "mode", 0)
        assert "Another DHCP server (192.168.50.1) answered" in screen_text(app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert on_step(app, "dhcp_mode")
        assert "type eth0 or" in screen_text(app)
        confirm = app.screen.query_one("#confirm")
        confirm.focus()
        await pilot.pause()
        await type_text(pilot, "yes")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert on_step(app, "dhcp_mode"), "a plain yes must not override"
        await pilot.press(*["backspace"] * 3)
        await type_text(pilot, "I own this network")
        await next_to(pilot, "media")
        await from_mode_to_review_from_media(pilot)
        assert app.state.plan is not None
        assert app.state.plan.dhcp.mode is DhcpMode.full and app.state.plan.dhcp.override_existing_server
        assert "beside another DHCP server: confirmed" in screen_text(app)


async def from_mode_to_review_from_media(pilot: Any) -> None:
    await wait_for(pilot, lambda: pilot.app.state.media_found is not None, what="media")
    await next_to(pilot, "transport")
    await next_to(pilot, "review")


@pytest.mark.parametrize("index,transport,copy", [
    (0, Transport.http, None), (1, Transport.tftp, None), (2, Transport.nfs, True),
    (3, Transport.nbd, False)])
async def test_each_transport_and_its_ram_warning(wizard: Any, index: int,
                                                  transport: Transport, copy: bool | None) -> None:
    from pxewizard.boot.ram import ram_estimate

    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        await next_to(pilot, "transport")
        if index:
            await choose_radio(pilot, "transport", index)
        if copy is False:
            await pilot.press("tab", "space")
            await pilot.pause()
        media = app.draft.media
        est = ram_estimate(media, media.entries[0], transport.value, copy)
        words = f"clients need about {size_text(est.needed_bytes)} RAM with " \
                f"{transport.value.upper()}"
        text = " ".join(screen_text(app).split())
        assert words in text
        if copy is False:
            assert "depend on this server until they shut down" in text
        assert_console_safe(app)
        await next_to(pilot, "review")
        plan = app.state.plan
        assert plan is not None and plan.boot.transport is transport
        assert plan.nbd.enabled is (transport is Transport.nbd)
        assert plan.nfs.enabled is (transport is Transport.nfs)
        assert plan.boot.copytoram is copy


async def test_ram_figures_for_every_transport_are_shown(wizard: Any) -> None:
    """HTTP's figure as the warning, the others (with and without copy to RAM) beside it."""
    from pxewizard.boot.ram import ram_estimate

    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        await next_to(pilot, "transport")
        m = app.draft.media
        fig = {(t, c): size_text(ram_estimate(m, m.entries[0], t, c).needed_bytes)
               for t, c in (("http", None), ("tftp", None), ("nfs", False), ("nfs", True),
                            ("nbd", False), ("nbd", True))}
        text = " ".join(screen_text(app).split())
        assert f"clients need about {fig['http', None]} RAM with HTTP" in text
        assert (f"Others: TFTP {fig['tftp', None]}, NFS {fig['nfs', False]}, "
                f"NFS+copy {fig['nfs', True]}, NBD {fig['nbd', False]}, "
                f"NBD+copy {fig['nbd', True]}") in text
        # the fake SystemRescue image is 900 MiB: HTTP needs it twice, NBD without copy not
        assert fig["http", None].endswith("GiB") and fig["nbd", False].endswith("MiB")


async def test_assign_an_address_to_a_bare_interface(wizard: Any) -> None:
    det = FakeDetector()
    app = wizard(det)
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot, "eth1")
        assert "no IPv4 address: assign one below" in screen_text(app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert on_step(app, "interface") and "has no IPv4 address" in screen_text(app)
        await pilot.press("tab")
        await type_text(pilot, "10.9.0.1/24")
        await pilot.press("enter")
        await wait_for(pilot, lambda: det.assigned != [], what="assign")
        assert det.assigned == [("eth1", "10.9.0.1", 24, None)]
        await wait_for(pilot, lambda: app.screen.selected() is not None
                       and app.screen.selected().address == "10.9.0.1", what="reload")
        await next_to(pilot, "dhcp_scan")
        assert app.draft.server_ip == "10.9.0.1" and app.draft.interface == "eth1"


async def test_bad_address_is_refused_in_words(wizard: Any) -> None:
    det = FakeDetector()
    app = wizard(det)
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot, "eth1")
        await pilot.press("tab")
        await type_text(pilot, "10.9.0.0/24")
        await pilot.press("enter")
        await pilot.pause()
        assert "network or broadcast address" in screen_text(app)
        assert det.assigned == []


async def test_bridge_forward_delay_warning_and_fix(wizard: Any) -> None:
    det = FakeDetector()
    app = wizard(det)
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot, "br0")
        text = " ".join(screen_text(app).split())
        assert "forward delay 15 s" in text and "PXE ROMs time out" in text
        await pilot.press("f")
        await wait_for(pilot, lambda: det.bridges_fixed == ["br0"], what="bridge fix")
        await wait_for(pilot, lambda: "ready to serve" in screen_text(app), what="reload")


async def test_wireless_warns(wizard: Any) -> None:
    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot, "wlan0")
        assert "wireless: PXE firmware boots over Ethernet only" in " ".join(
            screen_text(app).split())


async def test_media_path_validates_as_you_type(wizard: Any) -> None:
    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        await pilot.press("tab")
        await type_text(pilot, "/srv/iso/nothing.iso")
        await wait_for(pilot, lambda: "no such file" in screen_text(app), what="error")
        await pilot.press(*["backspace"] * len("nothing.iso"))
        await type_text(pilot, "debian-live-12.iso")
        await wait_for(pilot, lambda: "ok: Debian Live 12" in screen_text(app), what="ok")
        # untick "Boot from local disk", keep Debian Live
        await pilot.press("tab", "tab", "space")
        await pilot.pause()
        await next_to(pilot, "transport")
        await next_to(pilot, "review")
        plan = app.state.plan
        assert plan is not None
        assert str(plan.boot.media) == "/srv/iso/debian-live-12.iso"
        assert plan.boot.entries == ["live"]


async def test_plan_file_opens_at_review_and_saves(wizard: Any, tmp_path: Path) -> None:
    from pxewizard.plan import plan_from_dict, save_plan

    plan = plan_from_dict({"interface": "pxe0", "server_ip": "10.99.0.1",
                           "state_dir": str(tmp_path / "s"),
                           "dhcp": {"mode": "full", "range_start": "10.99.0.100",
                                    "range_end": "10.99.0.150"},
                           "tftp": {"windowsize": 8}, "boot": {"transport": "tftp"}})
    src = tmp_path / "in.toml"
    save_plan(plan, src)
    out = tmp_path / "out.toml"
    app = wizard(plan=load_plan(src), plan_path=str(out))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: on_step(app, "review"), what="review")
        assert "Serve on pxe0 10.99.0.1/24" in screen_text(app)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: out.exists(), what="save")
        assert load_plan(out) == load_plan(src)
        assert_console_safe(app)


async def test_back_keeps_choices(wizard: Any) -> None:
    app = wizard(FakeDetector(servers=[seen_server()]))
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await choose_radio(pilot, "mode", 2)
        await pilot.press("escape")
        await wait_for(pilot, lambda: on_step(app, "dhcp_scan"), what="back")
        await next_to(pilot, "dhcp_mode")
        assert "(*) none" in screen_text(app)


async def test_export_for_a_permanent_server(wizard: Any, tmp_path: Path) -> None:
    from pxewizard.plan import plan_from_dict

    from .test_tmux import make_medium

    medium = make_medium(tmp_path / "medium")
    plan = plan_from_dict({"interface": "pxe0", "server_ip": "10.99.0.1",
                           "state_dir": str(tmp_path / "s"), "dhcp": {"mode": "proxy"},
                           "boot": {"media": str(medium)}})
    app = wizard(plan=plan, plan_path=str(tmp_path / "plan.toml"), export=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: on_step(app, "review"), what="review")
        app.screen.query_one("#export").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "exported" in screen_text(app)
                       or "export failed" in screen_text(app), timeout=20, what="export")
        assert "exported" in screen_text(app), screen_text(app)
        out = tmp_path / "s" / "export"  # its own folder in the state dir (issue 18)
        assert (out / "dnsmasq.conf").exists() or any(out.iterdir())
        assert (out / "plan.toml").exists()
        assert not (tmp_path / "plan.toml").exists()  # the save-as path is left alone
        assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
        unit = (out / "pxewizard.service").read_text()
        assert "--plan /etc/pxewizard/plan.toml" in unit and ".tmp" not in unit


async def test_review_loads_a_plan_file(wizard: Any, tmp_path: Path) -> None:
    from pxewizard.plan import plan_from_dict, save_plan

    other = tmp_path / "other.toml"
    save_plan(plan_from_dict({"interface": "eth9", "server_ip": "172.20.0.5", "prefix": 16,
                              "state_dir": str(tmp_path / "s"), "dhcp": {"mode": "none"}}),
              other)
    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        await next_to(pilot, "transport")
        await next_to(pilot, "review")
        path = app.screen.query_one("#plan-path")
        path.value = ""
        path.focus()
        await type_text(pilot, str(other))
        await pilot.press("tab", "tab", "enter")  # Save, Load
        await wait_text(pilot, "Serve on eth9 172.20.0.5/16", "DHCP none")
        assert app.state.plan is not None and app.state.plan.interface == "eth9"
        await pilot.press("ctrl+q")


async def test_full_without_a_scan_warns(wizard: Any) -> None:
    class NoProbe(FakeDetector):
        async def probe(self, interface: str, timeout: float) -> list:
            from pxewizard.errors import NeedsRoot

            raise NeedsRoot("probing for DHCP servers needs a raw socket", "run as root")

    app = wizard(NoProbe())
    async with app.run_test(size=SIZE) as pilot:
        await to_interface(pilot)
        await next_to(pilot, "dhcp_scan")
        await wait_text(pilot, "did not run: probing for DHCP servers needs a raw socket")
        await next_to(pilot, "dhcp_mode")
        assert "(*) proxyDHCP" in screen_text(pilot.app)  # unknown segment: the safe choice
        await choose_radio(pilot, "mode", 0)
        await wait_text(pilot, "The DHCP scan did not run")


async def test_external_http_and_default_entry(wizard: Any) -> None:
    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        # table -> path -> 3 entry boxes -> default entry Select: open it, take the second
        await pilot.press("tab", "tab", "tab", "tab", "tab", "enter")
        await pilot.pause()
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        await next_to(pilot, "transport")
        await pilot.press("tab")  # radio set -> URL (copy to RAM is disabled for HTTP)
        await type_text(pilot, "ftp://mirror")
        await pilot.press("ctrl+n")
        await wait_text(pilot, "is not an http:// or https:// URL")
        await pilot.press(*["backspace"] * len("ftp://mirror"))
        await type_text(pilot, "http://mirror.lan/srcd")
        await next_to(pilot, "review")
        plan = app.state.plan
        assert plan is not None
        assert plan.boot.external_http == "http://mirror.lan/srcd/"
        assert plan.boot.default == "sysresccd-copytoram"
        await wait_text(pilot, "save plan as /tmp/")  # the save path is visible


async def test_review_names_the_local_boot_default_beside_another_server(wizard: Any) -> None:
    app = wizard(FakeDetector(servers=[seen_server()]))
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await from_mode_to_review(pilot)
        assert app.state.plan is not None and app.state.plan.dhcp.mode is DhcpMode.proxy
        assert "default local;" in screen_text(app)


async def test_media_step_ticks_several_orders_them_and_shows_the_menu(wizard: Any) -> None:
    """Issue 19: every medium found is a row; enter ticks, + moves up; the menu is shown."""
    from .fakes import debian_iso, sysrescue_media

    app = wizard(FakeDetector(media_=[sysrescue_media(), debian_iso()]))
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await next_to(pilot, "media")
        await wait_for(pilot, lambda: app.state.media_found is not None, what="media")
        text = " ".join(screen_text(app).split())
        assert "The menu: Boot SystemRescue" in text  # the first medium, ticked
        await pilot.press("down", "enter")  # tick Debian Live: second in the menu
        await pilot.pause()
        text = " ".join(screen_text(app).split())
        assert ("The menu: SystemRescue 11.02 Boot SystemRescue Boot SystemRescue and copy "
                "system to RAM Debian Live 12 Debian Live Boot from local disk") in text, text
        await pilot.press("plus")  # Debian Live first
        await pilot.pause()
        assert "The menu: Debian Live 12 Debian Live SystemRescue 11.02" in \
            " ".join(screen_text(app).split())
        await next_to(pilot, "transport")
        # each medium of the menu with its own RAM figure
        assert "SystemRescue 11.02: " in screen_text(app)
        await next_to(pilot, "review")
        assert "+ 1 more (/run/archiso/bootmnt)" in " ".join(screen_text(app).split())
        plan = app.state.plan
        assert plan is not None
        assert [str(p) for p in plan.boot.media_paths] == ["/srv/iso/debian-live-12.iso",
                                                           "/run/archiso/bootmnt"]
        assert plan.boot.entries is None

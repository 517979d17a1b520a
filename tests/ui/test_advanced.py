"""Issue 18: Review > Advanced settings: HTTP port, extra kernel command line, allowed MACs,
loader, Secure Boot, reservations and remote entries, each typed by keys, checked by the Plan (refused in
words next to the field), carried into the saved Plan, and round-tripped from a Plan file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Input, TextArea

from pxewizard.plan import Plan, load_plan, plan_from_dict, save_plan
from pxewizard.screens.advanced.fields import (format_remote_entries, format_reservations,
                                               parse_remote_entries, parse_reservations)
from pxewizard.screens.draft import Draft

from .helpers import screen_lines, screen_text, wait_for, wait_text
from .test_wizard import (assert_console_safe, choose_radio, from_mode_to_review, on_step,
                          to_dhcp_mode, type_text)

SIZE = (80, 25)

EVERYTHING = {
    "interface": "pxe0", "server_ip": "10.99.0.1",
    "dhcp": {"mode": "full", "range_start": "10.99.0.100", "range_end": "10.99.0.150",
             "allowed_macs": ["52:54:00:00:00:09"],
             "reservations": [{"mac": "52:54:00:00:00:01", "ip": "10.99.0.20",
                               "hostname": "pc1", "boot_file": "lpxelinux.0",
                               "boot_entry": "sysresccd"},
                              {"mac": "52:54:00:00:00:02", "boot_entry": "123"}],
             "boot_files": {"efi_ia32": "ipxe32.efi"}, "lease_time": 7200},
    "http": {"port": 8080, "max_per_client": 9},
    "tftp": {"windowsize": 8},
    "boot": {"transport": "tftp", "extra_cmdline": "setkmap=de rootpass=s3cret",
             "loader": "ipxe", "secure_boot": "on", "default": "local", "timeout": 30,
             "remote_entries": [{"id": "deb", "label": "Debian 12 installer",
                                 "kernel": "http://deb.example/linux",
                                 "initrds": ["http://deb.example/initrd.gz"],
                                 "cmdline": "priority=low auto=true",
                                 "local_kernel": "deb/linux",
                                 "local_initrds": ["deb/initrd.gz"]}]},
}
"""A Plan with every Advanced setting away from its default, and fields the step never shows."""


def everything(tmp_path: Path) -> Plan:
    return plan_from_dict({**EVERYTHING, "state_dir": str(tmp_path / "state")})


async def to_advanced(pilot: Any) -> Any:
    app = pilot.app
    await wait_for(pilot, lambda: on_step(app, "review"), what="review")
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: on_step(app, "advanced"), what="advanced")
    await pilot.pause()
    return app.screen


async def focus_and_clear(pilot: Any, widget_id: str) -> None:
    w = pilot.app.screen.query_one(f"#{widget_id}")
    w.focus()
    if isinstance(w, Input):
        w.value = ""
    else:
        w.text = ""
    await pilot.pause()


def field_error(app: Any, field: str) -> str:
    return str(app.screen.query_one(f"#err-{field}").render())


# --- the line editors, without a screen --------------------------------------------------


def test_reservation_and_remote_lines_round_trip_every_field() -> None:
    res = EVERYTHING["dhcp"]["reservations"]
    text = format_reservations(res)
    assert text.splitlines()[1] == "52:54:00:00:00:02 entry=123"  # not read as an address
    assert parse_reservations(text) == (res, [1, 2], [])
    rem = EVERYTHING["boot"]["remote_entries"]
    assert parse_remote_entries(format_remote_entries(rem)) == (rem, [1], [])
    _, _, bad = parse_reservations("52:54:00:00:00:01 a b\n52:54:00:00:00:02 colour=red")
    assert "line 1: 'b' is a second entry id" in bad[0] and "'colour=' is not known" in bad[1]
    _, _, bad = parse_remote_entries("deb 'Debian\nx y")
    assert "line 1: a quote is not closed" in bad[0]
    assert "line 2: kernel=URL missing in 'x y'" in bad[1]


def test_a_draft_from_a_plan_gives_back_the_same_plan(tmp_path: Path) -> None:
    plan = everything(tmp_path)
    assert Draft.from_plan(plan).to_plan() == plan
    # the loader back to pxelinux drops only the iPXE defaults, not a file the Plan named
    d = Draft.from_plan(plan)
    d.loader = "pxelinux"
    files = d.to_plan().dhcp.boot_files
    assert (files.bios, files.efi_x64, files.efi_ia32) == \
        ("pxelinux.0", "efi64/syslinux.efi", "ipxe32.efi")


# --- on screen -------------------------------------------------------------------------


async def test_each_advanced_field_reaches_the_saved_plan(wizard: Any, tmp_path: Path) -> None:
    """A fresh wizard: Review, ctrl+o, every field typed by keys, Done, then Ctrl-S."""
    app = wizard()
    async with app.run_test(size=SIZE) as pilot:
        await to_dhcp_mode(pilot)
        await from_mode_to_review(pilot)
        assert "Advanced settings (^o): HTTP port" in " ".join(screen_text(app).split())
        await to_advanced(pilot)
        assert "Step 7/8: Review > Advanced settings" in screen_text(app)
        assert app.focused.id == "http-port"
        await type_text(pilot, "8080")
        await pilot.press("tab")
        await type_text(pilot, "setkmap=de rootpass=s3cret")
        await pilot.press("tab")
        await type_text(pilot, "52-54-00-00-00-09, 52:54:00:00:00:0A")
        await pilot.press("tab")
        await choose_radio(pilot, "loader", 1)
        await pilot.press("tab")
        assert app.focused.id == "secure-boot"
        # this machine has the signed files or not: the step says which, with the fix
        assert "grub-efi-amd64-signed" in str(app.screen.query_one("#signed-files").render())
        await choose_radio(pilot, "secure-boot", 1)  # auto
        await pilot.press("tab")
        assert app.focused.id == "reservations"
        await type_text(pilot, "52:54:00:00:00:01 192.168.50.20 rescue host=pc1")
        await pilot.press("tab")
        await type_text(pilot, "deb Debian installer kernel=http://deb.example/linux "
                               "initrd=http://deb.example/initrd.gz")
        assert_console_safe(app)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: on_step(app, "review") and app.state.plan is not None,
                       what="review")
        plan = app.state.plan
        assert plan.http.port == 8080
        assert plan.boot.extra_cmdline == "setkmap=de rootpass=s3cret"
        assert plan.dhcp.allowed_macs == ["52:54:00:00:00:09", "52:54:00:00:00:0a"]
        assert plan.boot.loader == "ipxe" and plan.dhcp.boot_files.bios == "undionly.kpxe"
        assert plan.boot.secure_boot == "auto"
        r = plan.dhcp.reservations[0]
        assert (r.mac, str(r.ip), r.boot_entry, r.hostname) == \
            ("52:54:00:00:00:01", "192.168.50.20", "rescue", "pc1")
        e = plan.boot.remote_entries[0]
        assert (e.id, e.label, e.kernel, e.initrds) == \
            ("deb", "Debian installer", "http://deb.example/linux",
             ["http://deb.example/initrd.gz"])
        await wait_text(pilot, "HTTP port 8080", "Kernel command line + setkmap=de",
                        "Answers only 52:54:00:00:00:09, 52:54:00:00:00:0a",
                        "Reserved 52:54:00:00:00:01: 192.168.50.20, entry rescue, host pc1",
                        "Loader ipxe: BIOS undionly.kpxe",
                        "Secure Boot auto: UEFI x64 clients get shim -> GRUB where installed",
                        "Remote entry deb")
        # the wrapped summary keeps every word: nothing runs off the right edge
        assert all(len(line.rstrip()) <= 80 for line in screen_lines(app))
        await pilot.press("ctrl+s")
        saved = tmp_path / "plan.toml"
        await wait_for(pilot, saved.exists, what="saved")
        assert load_plan(saved) == plan
        assert oct(saved.stat().st_mode & 0o777) == "0o600"  # rootpass= inside
        # and back in: the step shows what the Plan holds
        await to_advanced(pilot)
        s = app.screen
        assert s.query_one("#http-port", Input).value == "8080"
        assert s.query_one("#allowed-macs", Input).value == \
            "52:54:00:00:00:09, 52:54:00:00:00:0a"
        assert s.query_one("#reservations", TextArea).text == \
            "52:54:00:00:00:01 192.168.50.20 rescue host=pc1"
        assert s.query_one("#secure-boot-auto").value


async def test_bad_values_are_refused_next_to_their_field(wizard: Any, tmp_path: Path) -> None:
    plan = plan_from_dict({**EVERYTHING, "state_dir": str(tmp_path / "state"),
                           "dhcp": {**EVERYTHING["dhcp"], "boot_files": {"bios": "lpxelinux.0"}},
                           "boot": {**EVERYTHING["boot"], "loader": "pxelinux"}})
    app = wizard(plan=plan)
    async with app.run_test(size=SIZE) as pilot:
        await to_advanced(pilot)
        await focus_and_clear(pilot, "http-port")
        await type_text(pilot, "99999")
        await focus_and_clear(pilot, "allowed-macs")
        await type_text(pilot, "52:54:00:00:00:09 52:54:00:zz")
        await focus_and_clear(pilot, "reservations")
        await type_text(pilot, "52:54:00:00:00:01 10.99.0.20")
        await pilot.press("enter")
        await type_text(pilot, "52:54:00:00:00:02 10.99.0.300")
        await focus_and_clear(pilot, "remote-entries")
        await type_text(pilot, "Deb Debian kernel=ftp://deb.example/linux")
        app.screen.query_one("#loader").focus()
        await pilot.pause()
        await choose_radio(pilot, "loader", 1)  # iPXE, but the Plan names lpxelinux.0
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert on_step(app, "advanced")
        assert "http.port" in field_error(app, "http_port") and \
            "'99999'" in field_error(app, "http_port") and "65535" in field_error(app, "http_port")
        assert "'52:54:00:zz' is not a MAC address; write it as aa:bb:cc:dd:ee:ff" in \
            field_error(app, "allowed_macs")
        assert "dhcp.reservations, line 2, ip" in field_error(app, "reservations")
        assert "'10.99.0.300' is not an IPv4 address" in field_error(app, "reservations")
        err = field_error(app, "remote_entries")
        assert "boot.remote_entries, line 1, id: 'Deb' is not an id" in err
        assert "'ftp://deb.example/linux' is not a URL" in err
        await wait_text(pilot, "setting(s) refused")
        await pilot.press("escape")  # Back is blocked too
        await pilot.pause()
        assert on_step(app, "advanced")
        # the fields fixed, the Plan's checks across fields speak: iPXE beside lpxelinux.0
        for widget_id, text in (("http-port", "8081"), ("allowed-macs", "52:54:00:00:00:0b"),
                                ("reservations", "52:54:00:00:00:01 10.99.0.21"),
                                ("remote-entries", "deb Debian kernel=http://deb.example/l")):
            await focus_and_clear(pilot, widget_id)
            await type_text(pilot, text)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert on_step(app, "advanced") and field_error(app, "http_port") == ""
        assert "dhcp.boot_files.bios: 'lpxelinux.0' is a syslinux loader but boot.loader = " \
            "\"ipxe\"" in field_error(app, "loader")
        await pilot.press("ctrl+r")  # undo: the values the step opened with
        await pilot.pause()
        assert field_error(app, "http_port") == ""
        await pilot.press("escape")
        await wait_for(pilot, lambda: on_step(app, "review") and app.state.plan is not None,
                       what="review")
        assert app.state.plan == plan


async def test_a_plan_file_round_trips_through_the_advanced_step(
        wizard: Any, tmp_path: Path) -> None:
    """pxewizard --plan x.toml: every setting kept, those the step shows and those it doesn't."""
    src = tmp_path / "in.toml"
    save_plan(everything(tmp_path), src)
    original = load_plan(src)
    out = tmp_path / "out.toml"
    app = wizard(plan=original, plan_path=str(out))
    async with app.run_test(size=SIZE) as pilot:
        s = await to_advanced(pilot)
        assert s.query_one("#extra-cmdline", Input).value == "setkmap=de rootpass=s3cret"
        assert s.query_one("#loader-ipxe").value
        assert s.query_one("#secure-boot-on").value
        assert "cmdline='priority=low auto=true'" in s.query_one("#remote-entries",
                                                                  TextArea).text
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: on_step(app, "review") and app.state.plan is not None,
                       what="review")
        await wait_text(pilot, "Advanced settings (^o), not the defaults", "HTTP port 8080")
        await pilot.press("ctrl+s")
        await wait_for(pilot, out.exists, what="saved")
    assert load_plan(out) == original
    assert out.read_text() == src.read_text()


def test_plan_problems_land_on_their_field() -> None:
    from pxewizard.screens.advanced.fields import assign

    found, rest = assign([
        "nfs.port: tcp port 8080 is also used by http; give each service its own port",
        "dhcp.reservations.1.mac: 'zz' is not a MAC address; write it as aa:bb:cc:dd:ee:ff",
        "dhcp.reservations: 10.99.0.20 is reserved for two MACs; an address goes to one "
        "client only",
        "dhcp.boot_files.bios: 'pxelinux.0' is a syslinux loader but boot.loader = \"ipxe\"",
        "dhcp.range_start: 10.0.0.5 is outside 10.99.0.0/24"],
        {"reservations": [1, 4]})
    assert list(found) == ["http_port", "reservations", "loader"]
    assert found["reservations"][0].startswith("dhcp.reservations, line 4, mac: 'zz'")
    assert found["reservations"][1].startswith("dhcp.reservations: 10.99.0.20 is reserved")
    assert rest == ["dhcp.range_start: 10.0.0.5 is outside 10.99.0.0/24"]


async def test_f1_explains_the_advanced_fields(wizard: Any, tmp_path: Path) -> None:
    app = wizard(plan=everything(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await to_advanced(pilot)
        await pilot.press("enter")  # in a field, Enter goes to the next one, not away
        await pilot.pause()
        assert on_step(app, "advanced") and app.focused.id == "extra-cmdline"
        await pilot.press("f1")
        text = await wait_text(pilot, "Keys on Review > Advanced settings", "^r Undo changes",
                               "rootpass=... (the Plan file then holds it: mode 0600)",
                               "a line a client: MAC [IP] [entry-id] [host=] [file=]")
        assert all(len(line.rstrip()) <= 80 for line in text.splitlines())
        assert_console_safe(app)
        await pilot.press("x")
        await wait_for(pilot, lambda: "Keys on" not in screen_text(app), what="help closed")
        assert on_step(app, "advanced")
        app.screen.query_one("#reservations").focus()
        await pilot.pause()
        await pilot.press("escape")  # the text boxes let go of esc: Back to Review
        await wait_for(pilot, lambda: on_step(app, "review"), what="review")


def test_the_choices_offer_every_value_the_plan_takes() -> None:
    from typing import get_args

    from pxewizard.plan import LOADERS
    from pxewizard.screens.advanced.screen import _LOADER_WORDS, _SECURE_WORDS

    boot = Plan.model_fields["boot"].annotation
    assert tuple(_LOADER_WORDS) == LOADERS
    assert set(_SECURE_WORDS) == set(get_args(boot.model_fields["secure_boot"].annotation))

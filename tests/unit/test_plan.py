"""The Plan: validation errors name the field, the value and the fix; TOML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxewizard.errors import PlanError
from pxewizard.plan import (DhcpMode, Plan, Transport, dump_plan, field_docs, load_plan,
                            normalize_mac, plan_from_dict, save_plan)

BASE = {"interface": "pxe0", "server_ip": "10.99.0.1"}


def full(**dhcp) -> dict:
    d = {"mode": "full", "range_start": "10.99.0.100", "range_end": "10.99.0.199"}
    d.update(dhcp)
    return {**BASE, "dhcp": d}


def problems(data: dict) -> list[str]:
    with pytest.raises(PlanError) as err:
        plan_from_dict(data)
    return err.value.problems


def test_minimal_plan_defaults() -> None:
    p = plan_from_dict(BASE)
    assert p.dhcp.mode is DhcpMode.proxy
    assert p.boot.transport is Transport.http
    assert str(p.netmask) == "255.255.255.0"
    assert p.http_base == "http://10.99.0.1/"


def test_http_base_port_and_external() -> None:
    p = plan_from_dict({**BASE, "http": {"port": 8080}})
    assert p.http_base == "http://10.99.0.1:8080/"
    p = plan_from_dict({**BASE, "boot": {"external_http": "http://mirror.example/sr"}})
    assert p.http_base == "http://mirror.example/sr/"


def test_full_pool_must_be_in_subnet() -> None:
    msgs = problems(full(range_start="10.98.0.5"))
    assert any("dhcp.range_start" in m and "10.98.0.5" in m and "outside" in m for m in msgs)


def test_pool_must_not_contain_server_or_router() -> None:
    msgs = problems(full(range_start="10.99.0.1", router="10.99.0.150"))
    assert any("contains server_ip" in m for m in msgs)
    assert any("dhcp.router" in m for m in msgs)


def test_full_needs_a_pool() -> None:
    msgs = problems({**BASE, "dhcp": {"mode": "full"}})
    assert any("needs a pool" in m for m in msgs)


def test_unknown_field_and_bad_type_named() -> None:
    msgs = problems({**BASE, "tftp": {"prot": 69, "port": "x"}})
    assert any(m.startswith("tftp.prot: unknown setting") for m in msgs)
    assert any(m.startswith("tftp.port (UDP port): 'x' is not a whole number") for m in msgs)


def test_bad_values_name_the_field_in_words_the_value_and_the_fix() -> None:
    msgs = problems({**BASE, "dhcp": {"dns": ["10.0.0.53", "8.8.8.x"]}})
    assert msgs == [("dhcp.dns, entry 2 (DNS servers given to clients): '8.8.8.x' is not an "
                     "IPv4 address; write four numbers from 0 to 255 separated by dots, "
                     "e.g. 192.168.1.10")]
    assert not any("Input" in m for m in problems({**BASE, "server_ip": "10.0.0.x"}))


def test_allowed_macs_normalised_and_validated() -> None:
    p = plan_from_dict({**BASE, "dhcp": {"allowed_macs": ["52-54-00-99-00-10",
                                                          "525400990010", "52:54:00:99:00:11"],
                                         "reservations": [{"mac": "52:54:00:99:00:12"}]}})
    assert p.dhcp.allowed_macs == ["52:54:00:99:00:10", "52:54:00:99:00:11"]
    assert p.known_macs == {"52:54:00:99:00:10", "52:54:00:99:00:11", "52:54:00:99:00:12"}
    assert plan_from_dict(BASE).known_macs is None  # empty: every client
    msgs = problems({**BASE, "dhcp": {"allowed_macs": ["52:54:00:99"]}})
    assert msgs == [("dhcp.allowed_macs: '52:54:00:99' is not a MAC address; write it as "
                     "aa:bb:cc:dd:ee:ff")]


def test_reservations_unique_and_macs_normalised() -> None:
    data = full(reservations=[{"mac": "52-54-00-99-00-10", "ip": "10.99.0.20"},
                              {"mac": "525400990010", "ip": "10.99.0.21"}])
    msgs = problems(data)
    assert any("52:54:00:99:00:10 appears more than once" in m for m in msgs)
    with pytest.raises(ValueError):
        normalize_mac("52:54:00")


def test_port_clash_between_tcp_services() -> None:
    msgs = problems({**BASE, "nbd": {"enabled": True, "port": 80}})
    assert any("also used by http" in m for m in msgs)


def test_transport_needs_its_server() -> None:
    msgs = problems({**BASE, "boot": {"transport": "nbd"}})
    assert any("nbd.enabled" in m for m in msgs)


def test_toml_round_trip(tmp_path: Path) -> None:
    p = plan_from_dict(full(dns=["10.99.0.53"], reservations=[{"mac": "aa:bb:cc:dd:ee:ff",
                                                                "boot_file": "ipxe.efi"}]))
    path = tmp_path / "plan.toml"
    save_plan(p, path)
    assert load_plan(path) == p
    assert "range_start" in dump_plan(p)


def test_relative_paths_follow_the_plan_file(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "plan.toml").write_text(
        'interface = "pxe0"\nserver_ip = "10.99.0.1"\nstate_dir = "state"\n'
        '[boot]\nmedia = "media"\n')
    p = load_plan(tmp_path / "plan.toml")
    assert p.boot.media == (tmp_path / "media").resolve()
    assert p.state_dir == (tmp_path / "state").resolve()


def test_load_errors_in_words(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("interface = \n")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(bad)


def test_every_field_documented() -> None:
    docs = field_docs(Plan)
    undocumented = [k for k, v in docs.items() if not v]
    assert not undocumented


def test_saved_plan_is_private(tmp_path: Path) -> None:
    import stat

    path = tmp_path / "plan.toml"
    save_plan(plan_from_dict(BASE), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_relay_pools_need_listed_relay_agents() -> None:
    pool = {"subnet": "10.20.0.0/24", "range_start": "10.20.0.10", "range_end": "10.20.0.20",
            "router": "10.20.0.1"}
    msgs = problems(full(relay_pools=[pool]))
    assert any("dhcp.relay_agents" in m and '"10.20.0.1"' in m for m in msgs)
    p = plan_from_dict(full(relay_pools=[pool], relay_agents=["10.20.0.1"]))
    assert [str(a) for a in p.dhcp.relay_agents] == ["10.20.0.1"]


def test_planted_plan_tmp_gains_nothing(tmp_path: Path) -> None:
    """A pre-created plan.toml.tmp (0666, someone else's) is neither reused nor followed."""
    import stat

    planted = tmp_path / "plan.toml.tmp"
    planted.write_text("planted")
    planted.chmod(0o666)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".plan.toml.x.tmp").symlink_to(victim)
    path = tmp_path / "plan.toml"
    save_plan(plan_from_dict(BASE), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "interface" in path.read_text()
    assert planted.read_text() == "planted" and victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".plan.toml.x.tmp", "plan.toml",
                                                          "plan.toml.tmp", "victim"]


def test_dns_offered_on_an_isolated_segment_is_never_the_hosts_own_resolver() -> None:
    from pxewizard.detect.host import dns_for_segment
    from pxewizard.screens.draft import Draft

    assert dns_for_segment(("127.0.0.53", "10.255.255.53", "10.99.0.53", "10.99.0.1"),
                           "10.99.0.0/24", "10.99.0.1") == ("10.99.0.53",)
    d = Draft(interface="pxe0", server_ip="10.99.0.1", prefix=24)
    d.suggest_full(("127.0.0.53", "192.0.2.53"))
    assert d.dns == "" and d.range_start  # the pool is still suggested


def test_media_takes_one_path_or_a_list(tmp_path: Path) -> None:
    base = {"interface": "eth0", "server_ip": "10.0.0.1"}
    one = plan_from_dict({**base, "boot": {"media": "/srv/sr"}})
    assert one.boot.media == Path("/srv/sr") and one.boot.media_paths == [Path("/srv/sr")]
    many = plan_from_dict({**base, "boot": {"media": ["/srv/sr", "/srv/isos"]}})
    assert many.boot.media_paths == [Path("/srv/sr"), Path("/srv/isos")]
    assert plan_from_dict({**base, "boot": {"media": ["/srv/sr"]}}).boot.media == Path("/srv/sr")
    assert plan_from_dict(base).boot.media_paths == []
    # relative paths of a list follow the Plan file too, and the list survives a round trip
    f = tmp_path / "plan.toml"
    f.write_text('interface = "eth0"\nserver_ip = "10.0.0.1"\n[boot]\nmedia = ["sr", "isos"]\n')
    loaded = load_plan(f)
    assert loaded.boot.media_paths == [tmp_path / "sr", tmp_path / "isos"]
    save_plan(loaded, tmp_path / "again.toml")
    assert load_plan(tmp_path / "again.toml").boot.media_paths == loaded.boot.media_paths


def test_extra_cmdline_on_one_line_and_remote_entry_words() -> None:
    from pxewizard.errors import PlanError
    from pxewizard.plan import plan_from_dict

    base = {"interface": "eth0", "server_ip": "10.0.0.1"}
    with pytest.raises(PlanError) as exc:
        plan_from_dict({**base, "boot": {"extra_cmdline": "setkmap=de\nrootpass=x"}})
    assert exc.value.problems[0].startswith("boot.extra_cmdline: 'setkmap=de\\nrootpass=x' "
                                            "holds the control character(s) '\\n'")
    with pytest.raises(PlanError) as exc:
        plan_from_dict({**base, "boot": {"remote_entries": [
            {"id": "Deb 12", "label": "Debian", "kernel": "deb.example/linux"}]}})
    assert exc.value.problems == [
        "boot.remote_entries, entry 1, id: 'Deb 12' is not an id; use lower-case letters, "
        "digits, - and _ only, e.g. debian-12",
        "boot.remote_entries, entry 1, kernel: 'deb.example/linux' is not a URL; write it "
        "with http:// or https://, e.g. http://deb.debian.org/debian/.../linux"]

"""``pxewizard doctor``: preflight and host checks, and the diagnosis of a saved event log.

Nothing is started: the checks read the host (root, the interface and its
address, ports and who holds them, the bridge's STP and forward delay, boot
loader files, file modes in the served roots, rp_filter, firewall rules,
image checksums) and, when asked, send one DHCP DISCOVER to see which servers
answer. With ``--log events.jsonl`` the saved events are replayed through the
timeline and the diagnosis rules, as they were seen live.

Every outcome is a :class:`~pxewizard.insight.diagnose.Finding`; the exit status is 1
when any of them is an error, else 0, so scripts can gate on it. Whatever goes
wrong inside a check becomes a finding in words, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..boot.ram import ram_estimate
from ..boot.checks import plan_problems
from ..boot.roottree import check_root_tree
from ..boot.tree import build_boot
from ..detect.bridge import bridge_facts_sync
from ..detect.dhcp_probe import PROBE_TIMEOUT, pool_in_use, probe_sync
from ..detect.firewall import firewall_check, firewall_hints, plan_ports
from ..detect.interfaces import InterfaceMissing, check_serving_address
from ..detect.neighbours import neighbours_sync
from ..detect.ports import port_holder
from ..errors import PxeError
from ..events import DhcpServerSeen, Event, from_dict, read_jsonl
from ..insight.diagnose import Finding, HostFacts, Severity, Thresholds, format_finding
from ..insight.session import InsightSession, host_facts, served_paths
from ..insight.timeline import Snapshot, format_timeline
from ..plan import load_plan

MiB = 1024 * 1024


def _f(sev: Severity, rule: str, title: str, cause: str = "", fix: str = "",
       details: Iterable[str] = ()) -> Finding:
    return Finding(severity=sev, rule=rule, client="", title=title, cause=cause or title,
                   fix=fix, details=tuple(details))


def _ok(rule: str, title: str) -> Finding:
    return _f(Severity.ok, rule, title)


# --- facts from a Plan -----------------------------------------------------------------------


# --- host checks -------------------------------------------------------------------------------


def check_root() -> list[Finding]:
    if os.geteuid() == 0:
        return [_ok("root", "running as root")]
    return [_f(Severity.warning, "root", "not running as root",
               "ports below 1024 (DHCP 67, TFTP 69, HTTP 80), binding to an interface and "
               "naming the processes that hold ports need root; the port checks below may "
               "miss holders",
               "run `sudo pxewizard doctor` (and serve as root)")]


def check_interface(plan: Any) -> list[Finding]:
    """The interface and its address (the check ``serve`` makes), then its link."""
    name, ip = plan.interface, str(plan.server_ip)
    out: list[Finding] = []
    try:
        check_serving_address(name, ip, plan.prefix)
    except InterfaceMissing as exc:
        return [_f(Severity.error, "interface", exc.message, exc.message, exc.fix or "")]
    except PxeError as exc:
        out.append(_f(Severity.error, "interface", exc.message, exc.message, exc.fix or ""))
    else:
        out.append(_ok("interface", f"{name} has {ip}/{plan.prefix}"))
    sysfs = Path("/sys/class/net") / name
    try:
        oper = (sysfs / "operstate").read_text().strip()
    except OSError:
        oper = "unknown"
    try:
        carrier = (sysfs / "carrier").read_text().strip() == "1"
    except OSError:     # reading carrier of a down interface fails with EINVAL
        carrier = False
    if oper == "down" or not carrier:
        out.append(_f(Severity.error, "link", f"{name} has no link ({oper}, "
                      f"{'carrier' if carrier else 'no carrier'})",
                      "no client can reach this machine through a link that is down or "
                      "has no cable/peer",
                      f"`ip link set {name} up` and check the cable and the switch port"))
    else:
        out.append(_ok("link", f"{name} link is {oper}"))
    return out


def wanted_ports(plan: Any) -> list[tuple[str, int, str]]:
    """(proto, port, service) the Plan's servers bind; 111 is left out: a running rpcbind
    there is fine (the NFS server registers with it)."""
    return [p for p in plan.bound_ports() if p[2] != "portmap"]


def check_ports(plan: Any | None,
                holder: Callable[[int, str], str | None] | None = None
                ) -> tuple[list[Finding], list[tuple[str, int, str, str]]]:
    """Findings for ports held by others, and the held list for :class:`HostFacts`."""
    holder = holder or port_holder
    wanted = wanted_ports(plan) if plan is not None else [
        ("udp", 67, "DHCP"), ("udp", 69, "TFTP"), ("tcp", 80, "HTTP"), ("udp", 4011, "proxyDHCP")]
    held, out = [], []
    for proto, port, service in wanted:
        who = holder(port, proto)
        if who is None:
            continue
        if plan is None:
            out.append(_f(Severity.info, "port-held", f"{proto.upper()} {port} ({service}) is "
                          f"held by {who}", f"{who} holds it; a plan using it would not start",
                          f"stop {who} before serving, or use other ports"))
            continue
        if "pxewizard" in who or "python" in who:
            who += " (a running `pxewizard serve`? stop it before serving again)"
        held.append((proto, port, service, who))
    if plan is not None and not held:
        out.append(_ok("ports", "ports free: " + ", ".join(f"{p.upper()} {n}"
                                                           for p, n, _ in wanted)))
    return out, held


def check_bridge(interface: str) -> tuple[list[Finding], object | None]:
    facts = bridge_facts_sync(interface)
    if not facts.exists or facts.bridge is None:
        return [], None
    if not facts.blocks_seconds:
        return [_ok("bridge", facts.words())], facts
    return [], facts     # the bridge-forward-delay rule reports it


def _explain_bridge_carrier(checks: list[Finding], bridge: Any) -> list[Finding]:
    """A bridge has no carrier until one of its ports forwards: say why, not 'no cable'."""
    if bridge is None:
        return checks
    out = []
    for f in checks:
        if f.rule == "link" and f.severity is Severity.error:
            waiting = getattr(bridge, "ports_not_forwarding", ())
            if waiting:
                f = replace(f, severity=Severity.info,
                            title=f"{f.title}: its ports are still in STP listening/learning",
                            cause="a bridge has no carrier until a port forwards; "
                                  + ", ".join(waiting) + " wait out the forward delay",
                            fix="see the bridge finding below")
            elif getattr(bridge, "is_bridge", True) and getattr(bridge, "bridge", None):
                f = replace(f, cause="a bridge has no carrier while none of its ports is up: "
                                     "nothing connects clients to it",
                            fix=f"add the NIC facing the clients: `ip link set NIC master "
                                f"{bridge.bridge}` and bring it up")
        out.append(f)
    return out


def check_boot(plan: Any) -> tuple[list[Finding], list[str], Any, list[Any]]:
    """Loaders and media through boot.tree; returns findings, served paths, the media and
    the plan-time problems (boot.checks, the same as serve and Review say)."""
    try:
        bt = build_boot(plan)
    except PxeError as exc:
        return [_f(Severity.error, "boot-tree", f"the boot tree cannot be built: {exc.message}",
                   exc.message, exc.fix or "")], [], None, plan_problems(plan)
    out: list[Finding] = []
    for path, why in getattr(bt, "skipped", ()):
        out.append(_f(Severity.warning, "media-skipped", f"boot.media: skipped {path}",
                      f"{path} is not in the menu: {why}",
                      "fix or remove it (an .iso: download it again and compare its "
                      "checksum; a copied medium: copy it whole)"))
    for w in bt.warnings:
        if w.startswith("boot.media: skipped "):
            continue  # said above, one finding each
        if "not found" in w and ("install it" in w or "boot loader" in w):
            out.append(_f(Severity.error, "loader-missing", w.split(";")[0], w,
                          w.split("install it: ")[-1] if "install it: " in w else ""))
        else:
            out.append(_f(Severity.warning, "boot-tree", w.split(". ")[0], w))
    if not any(f.severity >= Severity.error for f in out):
        media = getattr(bt, "all_media", None) or ([bt.media] if bt.media else [])
        what = ", ".join(f"{m.label} ({m.profile})" for m in media) or "no media"
        out.append(_ok("boot-tree", f"boot files present: {len(bt.entries)} menu entries, {what}"))
    return out, served_paths(bt.tree), bt.media, plan_problems(plan, bt)


def check_readable(roots: Iterable[Path], limit: int = 50000) -> list[Finding]:
    """Files that others cannot read: TFTP servers refuse them (tftpd-hpa: global read)."""
    bad: list[str] = []
    count = 0
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames:
                count += 1
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH:
                    bad.append(f"{p} (mode {stat.S_IMODE(st.st_mode):04o})")
                if count >= limit:
                    break
            for d in dirnames:
                dp = Path(dirpath) / d
                try:
                    if not dp.stat().st_mode & stat.S_IXOTH:
                        bad.append(f"{dp}/ (directory not searchable by others)")
                except OSError:
                    pass
    if not bad:
        return [_ok("readable", "served files are readable by others")] if count else []
    return [_f(Severity.error, "not-world-readable",
               f"{len(bad)} served file(s) are not readable by others",
               "files must have global read permissions (tftpd-hpa's rule, and ours): these "
               "would be refused", "chmod -R o+rX the served directory",
               details=bad[:8] + ([f"... and {len(bad) - 8} more"] if len(bad) > 8 else []))]


def check_rp_filter(plan: Any, proc: Path = Path("/proc/sys/net/ipv4/conf")) -> list[Finding]:
    def read(name: str) -> int | None:
        try:
            return int((proc / name / "rp_filter").read_text().strip())
        except (OSError, ValueError):
            return None

    vals = [v for v in (read("all"), read(plan.interface)) if v is not None]
    if not vals:
        return []
    eff = max(vals)
    if eff != 1:
        return [_ok("rp_filter", f"rp_filter on {plan.interface} is {eff} (not strict)")]
    relay = bool(plan.dhcp.relay_pools)
    return [_f(Severity.warning if relay else Severity.info, "rp_filter",
               f"strict reverse-path filter (rp_filter=1) on {plan.interface}",
               "packets from addresses routed through another interface are dropped: relayed "
               "DHCP (giaddr) and clients with addresses outside the interface's subnet",
               f"`sysctl -w net.ipv4.conf.{plan.interface}.rp_filter=2` (loose) and the same "
               "for `all` when clients come through a relay")]


def check_firewall(plan: Any | None) -> list[Finding]:
    ports = plan_ports(plan) if plan is not None else {67, 69, 80, 4011}
    ran, hints = firewall_hints(ports)
    if not ran:
        return []
    if not hints:
        return [_ok("firewall", "no firewall rule drops our ports")]
    return [_f(Severity.warning, "firewall", "firewall rules may drop PXE traffic",
               "these rules on the input path match ports our servers use",
               "add accept rules for the ports listed (UDP 67/69/4011, TCP 80 ...) on the "
               "PXE interface, or delete the rule named", details=hints[:10])]


def check_checksums(media: Any) -> list[Finding]:
    """The root image against its .sha512/.md5 (directory media), or an ISO against its sums."""
    if media is None:
        return []
    pairs: list[tuple[Path, Path]] = []
    mpath = Path(media.path)
    if mpath.is_dir() and getattr(media, "image_vpath", ""):
        img = mpath / media.image_vpath
        for ext in (".sha512", ".sha256", ".md5"):
            for cand in (img.with_suffix(ext), img.parent / (img.name + ext)):
                if cand.is_file():
                    pairs.append((img, cand))
                    break
            if pairs:
                break
    elif mpath.is_file():
        for ext in (".sha512", ".sha256", ".md5"):
            cand = mpath.parent / (mpath.name + ext)
            if cand.is_file():
                pairs.append((mpath, cand))
                break
    out: list[Finding] = []
    for img, sums in pairs:
        algo = {".sha512": "sha512", ".sha256": "sha256", ".md5": "md5"}[sums.suffix]
        try:
            want = None
            for line in sums.read_text(errors="replace").splitlines():
                parts = line.split()
                if parts and (len(parts) == 1 or parts[-1].lstrip("*").endswith(img.name)):
                    want = parts[0].lower()
                    break
            if want is None:
                continue
            h = hashlib.new(algo)
            with open(img, "rb") as fh:
                while chunk := fh.read(4 * MiB):
                    h.update(chunk)
        except OSError as exc:
            out.append(_f(Severity.warning, "checksum", f"cannot check {img.name}: "
                          f"{exc.strerror}"))
            continue
        if h.hexdigest() == want:
            out.append(_ok("checksum", f"{img.name} matches {sums.name}"))
        else:
            out.append(_f(Severity.error, "checksum", f"{img.name} does not match {sums.name}",
                          f"the {algo} of {img} differs from {sums.name}: the image is damaged "
                          "or incomplete; clients would fail late in stage 3",
                          "copy the medium again (or re-download it) and compare"))
    return out


def probe_servers(interface: str, timeout: float | None = None) -> list[DhcpServerSeen]:
    return list(probe_sync(interface, timeout or PROBE_TIMEOUT))


def check_probe(plan: Any, seen: list[DhcpServerSeen]) -> list[Finding]:
    ours = {str(plan.server_ip)}
    others = [s for s in seen if s.server_id not in ours]
    mode = str(plan.dhcp.mode.value)
    if mode == "proxy" and not [s for s in others if not s.proxy]:
        return [_f(Severity.warning, "probe", f"no DHCP server answered on {plan.interface}",
                   "in proxy mode another server must hand out the addresses; none answered "
                   "our DISCOVER, so clients would get no address",
                   "use dhcp.mode = full on an isolated segment, or check the other server")]
    if not others:
        return [_ok("probe", f"no other DHCP server answers on {plan.interface}")]
    words = ", ".join(f"{s.server_id} ({s.server_mac}{', proxy' if s.proxy else ''})"
                      for s in others)
    if mode == "full":
        d = plan.dhcp
        used = pool_in_use(others, d.range_start, d.range_end) if d.range_start else []
        if used:  # the competing-dhcp rule reports the server itself
            return [_f(Severity.warning, "pool-in-use",
                       f"the pool {d.range_start}-{d.range_end} contains addresses in use",
                       "the probe saw these addresses used on the segment; a client given "
                       "one would clash with that machine", "move dhcp.range_start/range_end "
                       "so they exclude them", details=used)]
        return []
    return [_ok("probe", f"DHCP servers answering on {plan.interface}: {words}")]


# --- the command --------------------------------------------------------------------------


@dataclass
class Report:
    """What doctor found: host checks, timelines (from --log) and the diagnosis."""

    checks: list[Finding] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    snapshot: Snapshot | None = None
    facts: HostFacts = field(default_factory=HostFacts)

    @property
    def errors(self) -> int:
        return sum(1 for f in (*self.checks, *self.findings) if f.severity is Severity.error)

    @property
    def warnings(self) -> int:
        return sum(1 for f in (*self.checks, *self.findings) if f.severity is Severity.warning)


def _guard(name: str, fn: Callable[[], Any], default: Any, report: Report) -> Any:
    try:
        return fn()
    except PxeError as exc:
        report.checks.append(_f(Severity.warning, name, f"{name} check failed: {exc.message}",
                                exc.message, exc.fix or ""))
    except Exception as exc:  # a check that breaks must not hide the others
        report.checks.append(_f(Severity.warning, name, f"{name} check could not run: {exc!r}",
                                "an unexpected error in this check; the others still ran"))
    return default


def load_events(path: Path | str) -> list[Event]:
    """Events of a JSONL log; lines that are not events of a known shape are skipped."""
    out = []
    for d in read_jsonl(path):
        if not isinstance(d, dict) or not isinstance(d.get("ts", 0), (int, float)):
            continue
        try:
            out.append(from_dict(d))
        except (TypeError, ValueError):
            continue
    return out


def _replay(session: InsightSession, events: list[Event], rep: Report) -> None:
    """Feed a saved log; an event of a damaged log must not stop the replay."""
    session.feed_all(events)
    if session.damaged:
        rep.checks.append(_f(Severity.warning, "log", f"{session.damaged} event(s) of the log "
                             "could not be read (damaged or from another version); the rest "
                             "was replayed"))


def run_doctor(plan: Any | None, *, log: Path | None = None, probe: bool = True,
               probe_timeout: float | None = None, checksums: bool = True,
               client_ram: int | None = None, now: float | None = None,
               thresholds: Thresholds | None = None) -> Report:
    """Every check and, with a log, the replayed diagnosis (no printing)."""
    rep = Report()
    rep.checks += _guard("root", check_root, [], rep)
    held: list[tuple[str, int, str, str]] = []
    bridge = None
    files: list[str] = []
    ram_needed = None
    seen: list[DhcpServerSeen] = []
    if plan is not None:
        iface = _guard("interface", lambda: check_interface(plan), [], rep)
        rep.checks += iface
        port_f, held = _guard("ports", lambda: check_ports(plan), ([], []), rep)
        rep.checks += port_f
        if not any(f.rule == "interface" and f.title.startswith(f"interface {plan.interface} "
                                                                "does not exist") for f in iface):
            br_f, bridge = _guard("bridge", lambda: check_bridge(plan.interface), ([], None),
                                  rep)
            rep.checks += br_f
            rep.checks = _explain_bridge_carrier(rep.checks, bridge)
        boot_f, files, media, problems = _guard("boot files", lambda: check_boot(plan),
                                                ([], [], None, []), rep)
        rep.checks += boot_f
        if media is not None and media.profile == "nfsroot":  # issue 23: boot/roottree.py
            rep.checks += _guard("root tree", lambda: [_f(Severity[p.severity], p.rule, p.title,
                                 p.cause, p.fix) for p in check_root_tree(
                                     Path(media.path), cmdline=plan.boot.extra_cmdline)]
                                 or [_ok("root-tree", f"{media.path}: no root tree pitfall")],
                                 [], rep)
        roots = [r for r in (plan.tftp.root, plan.http.root) if r is not None]
        if media is not None and Path(media.path).is_dir():
            roots.append(Path(media.path))
        rep.checks += _guard("readable", lambda: check_readable(roots), [], rep)
        rep.checks += _guard("rp_filter", lambda: check_rp_filter(plan), [], rep)
        rep.checks += _guard("firewall", lambda: check_firewall(plan), [], rep)
        if checksums:
            rep.checks += _guard("checksum", lambda: check_checksums(media), [], rep)
        if client_ram is not None and media is not None:
            def est() -> int:
                return ram_estimate(media, None, str(plan.boot.transport.value),
                                    plan.boot.copytoram).needed_bytes
            ram_needed = _guard("client RAM", est, None, rep)
        if probe and str(plan.dhcp.mode.value) in ("full", "proxy") and os.geteuid() == 0 \
                and not any(f.rule in ("interface", "link") and f.severity is Severity.error
                            for f in iface):
            seen = _guard("probe", lambda: probe_servers(plan.interface, probe_timeout), [],
                          rep)
            rep.checks += _guard("probe", lambda: check_probe(plan, seen), [], rep)
        rep.facts = host_facts(plan, files=files, bridge=bridge, client_ram=client_ram,
                               ram_needed=ram_needed, ports_held=held, plan_problems=problems,
                               firewall=firewall_check(plan_ports(plan)))
    else:
        rep.checks += _guard("ports", lambda: check_ports(None)[0], [], rep)
        rep.checks += _guard("firewall", lambda: check_firewall(None), [], rep)
    session = InsightSession(rep.facts, thresholds)
    events: list[Event] = []
    if log is not None:
        events = _guard("log", lambda: load_events(log), [], rep)
        if not events and not any(f.rule == "log" for f in rep.checks):
            rep.checks.append(_f(Severity.warning, "log", f"{log} holds no events"))
    if events:
        _guard("neighbours", lambda: _learn_neighbours(session, plan), None, rep)
    _replay(session, events, rep)
    session.saw_dhcp_servers(seen)
    if now is None:
        now = max((e.ts for e in events), default=time.time())
        if not events:
            now = time.time()
    snap = session.snapshot(now)
    rep.snapshot = snap
    if snap is not None:
        if log is None:
            # no clients to judge: only host-level rules (bridge, ports, RAM, competing DHCP)
            snap = replace(snap, started=None)
        rep.findings = session.findings(snap)
    return rep


def _learn_neighbours(session: InsightSession, plan: Any | None) -> None:
    """For a log replayed on the serving host, join unknown IPs through the ARP table."""
    for n in neighbours_sync(plan.interface if plan is not None else None):
        session.learn(n.ip, n.mac)


def format_report(rep: Report, *, verbose: bool = False) -> str:
    lines: list[str] = []
    if rep.checks:
        lines.append("Host checks:")
        for f in rep.checks:
            if f.severity is Severity.ok:
                lines.append(f"  ok      {f.title}")
            else:
                lines += ["  " + x for x in format_finding(f)]
    snap = rep.snapshot
    if snap is not None and snap.clients:
        lines.append("")
        lines.append(f"Clients ({len(snap.clients)}):")
        for tl in snap.clients:
            tlines = format_timeline(tl)
            if not verbose and len(tlines) > 40:
                tlines = tlines[:20] + [f"  ... {len(tlines) - 38} steps ..."] + tlines[-18:]
            lines += ["  " + x for x in tlines]
    lines.append("")
    if rep.findings:
        lines.append("Findings:")
        for f in rep.findings:
            lines += ["  " + x for x in format_finding(f)]
    else:
        lines.append("Findings: none")
    lines.append("")
    verdict = "FAIL" if rep.errors else "OK"
    lines.append(f"doctor: {verdict}: {rep.errors} error(s), {rep.warnings} warning(s)")
    return "\n".join(lines)


def report_json(rep: Report) -> str:
    def fd(f: Finding) -> dict[str, Any]:
        return {"severity": f.severity.name, "rule": f.rule, "client": f.client,
                "title": f.title, "cause": f.cause, "fix": f.fix, "details": list(f.details),
                "evidence": [e.to_dict() for e in f.evidence]}

    clients = []
    if rep.snapshot is not None:
        for tl in rep.snapshot.clients:
            s = tl.summary()
            clients.append({"client": tl.client, "mac": tl.mac, "ip": tl.ip,
                            "stage": tl.stage.name, "label": s.label, "idle": round(tl.idle, 3),
                            "bytes": {k.name: v for k, v in tl.bytes_by_stage().items()},
                            "steps": [{"title": st.title, "status": st.status.name,
                                       "stage": st.stage.name, "sent": st.sent,
                                       "started": st.started} for st in tl.steps]})
    return json.dumps({"ok": rep.errors == 0, "errors": rep.errors, "warnings": rep.warnings,
                       "checks": [fd(f) for f in rep.checks],
                       "findings": [fd(f) for f in rep.findings], "clients": clients},
                      indent=2)


def cli_replay(args: Any) -> int:
    """``pxewizard replay LOG.jsonl``: timelines and findings of a saved log, no host checks.

    Takes ``args.log`` (or ``args.file``); exit 1 when a finding is an error.
    """
    try:
        path = getattr(args, "log", None) or getattr(args, "file", None)
        rep = Report()
        events = _guard("log", lambda: load_events(path), [], rep)
        if events:
            session = InsightSession()
            _replay(session, events, rep)
            rep.snapshot = session.snapshot(max(e.ts for e in events))
            rep.findings = session.findings(rep.snapshot) if rep.snapshot is not None else []
        if getattr(args, "json", False):
            print(report_json(rep))
        else:
            print(format_report(rep, verbose=getattr(args, "verbose", False)))
        return 1 if rep.errors else 0
    except Exception as exc:  # never a traceback
        print(f"replay: internal error: {exc!r}; please report it", file=sys.stderr)
        return 1


def cli_doctor(args: Any) -> int:
    """``pxewizard doctor``: exit 0 when no error-level finding, 1 otherwise."""
    try:
        plan = None
        if getattr(args, "plan", None):
            try:
                plan = load_plan(args.plan)
            except PxeError as exc:
                print(f"doctor: {exc}")
                print("doctor: FAIL: the plan is not valid")
                return 1
        ram = getattr(args, "client_ram", None)
        rep = run_doctor(plan, log=Path(args.log) if getattr(args, "log", None) else None,
                         probe=not getattr(args, "no_probe", False),
                         checksums=not getattr(args, "no_checksum", False),
                         client_ram=int(ram * MiB) if ram else None)
        if getattr(args, "json", False):
            print(report_json(rep))
        else:
            print(format_report(rep, verbose=getattr(args, "verbose", False)))
        return 1 if rep.errors else 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the doctor itself must never end in a traceback
        print(f"doctor: internal error: {exc!r}; please report it", file=sys.stderr)
        return 1

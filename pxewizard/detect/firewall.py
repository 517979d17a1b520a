"""The host firewall: which nftables/iptables rules on the input path drop our ports.

Read by ``doctor`` and, when a client got a boot file and asked for nothing, by
the diagnosis (through ``HostFacts.firewall``), so the finding names the rule.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any


def _nft_rule_name(r: dict[str, Any]) -> str:
    """``rule inet filter input handle 5 ("comment")``: what `nft delete rule` needs."""
    name = f"rule {r.get('family')} {r.get('table')} {r.get('chain')}"
    if r.get("handle") is not None:
        name += f" handle {r['handle']}"
    if r.get("comment"):
        name += f" ({r['comment']!r})"
    return name


def firewall_from_iptables(text: str, ports: set[int]) -> list[str]:
    """Words for iptables-save rules on the INPUT path that would drop our ports."""
    out: list[str] = []
    policy_drop = False
    accepted: set[int] = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(":INPUT ") and line.split()[1] in ("DROP", "REJECT"):
            policy_drop = True
        if not line.startswith("-A INPUT"):
            continue
        m = re.search(r"--dports? ([\d,:]+)", line)
        nums = set()
        if m:
            for part in m.group(1).split(","):
                if ":" in part:
                    a, b = part.split(":")
                    nums |= {p for p in ports if int(a or 0) <= p <= int(b or 65535)}
                elif part.isdigit():
                    nums.add(int(part))
        verdict = line.rsplit("-j ", 1)[-1].split()[0] if "-j " in line else ""
        if verdict == "ACCEPT":
            accepted |= nums
        elif verdict in ("DROP", "REJECT"):
            for p in sorted(nums & ports):
                out.append(f"iptables: `{line}` drops port {p}")
    if policy_drop:
        missing = sorted(ports - accepted)
        if missing:
            out.append("iptables: INPUT policy DROP and no ACCEPT for port(s) "
                       + ", ".join(map(str, missing)))
    return out


def firewall_from_nft(data: dict[str, Any], ports: set[int]) -> list[str]:
    """Words for nftables input chains (``nft -j list ruleset``) that would drop our ports."""
    out: list[str] = []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for item in data.get("nftables", []):
        if "chain" in item:
            c = item["chain"]
            chains[(c.get("family"), c.get("table"), c.get("name"))] = c
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)

    def ports_of(expr: list[dict[str, Any]]) -> set[int]:
        found: set[int] = set()
        for e in expr:
            m = e.get("match")
            if not m:
                continue
            left = m.get("left", {})
            if isinstance(left, dict) and left.get("payload", {}).get("field") == "dport":
                right = m.get("right")
                vals = right.get("set", []) if isinstance(right, dict) else [right]
                for v in vals:
                    if isinstance(v, int):
                        found.add(v)
                    elif isinstance(v, dict) and "range" in v:
                        a, b = v["range"]
                        found |= {p for p in ports if a <= p <= b}
        return found

    def verdict(expr: list[dict[str, Any]]) -> str:
        for e in expr:
            for k in ("accept", "drop", "reject"):
                if k in e:
                    return k
        return ""

    for key, c in chains.items():
        if c.get("hook") != "input":
            continue
        accepted: set[int] = set()
        for r in rules.get(key, []):
            expr = r.get("expr", [])
            ps, v = ports_of(expr), verdict(expr)
            if v == "accept":
                accepted |= ps
            elif v in ("drop", "reject"):
                for p in sorted(ps & ports):
                    out.append(f"nftables: {_nft_rule_name(r)} {v}s port {p}")
        if c.get("policy") == "drop":
            missing = sorted(ports - accepted)
            if missing:
                out.append(f"nftables: chain {key[1]}/{key[2]} has policy drop and no accept "
                           "for port(s) " + ", ".join(map(str, missing)))
    return out


def firewall_hints(ports: set[int]) -> tuple[bool, list[str]]:
    """(a firewall tool ran, words for each rule that drops one of ``ports``)."""
    hints: list[str] = []
    ran = False
    if shutil.which("nft"):
        try:
            r = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            r = None
        if r is not None and r.returncode == 0 and r.stdout.strip():
            ran = True
            try:
                hints += firewall_from_nft(json.loads(r.stdout), ports)
            except (json.JSONDecodeError, AttributeError, TypeError):
                pass
    if shutil.which("iptables-save"):
        try:
            r = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            r = None
        if r is not None and r.returncode == 0:
            ran = True
            hints += firewall_from_iptables(r.stdout, ports)
    return ran, hints


def firewall_check(ports: set[int], ttl: float = 60.0) -> Callable[[], list[str]]:
    """``firewall_hints`` for the diagnosis: run when a rule asks, at most once per ``ttl``
    seconds (the rules run every second in Live)."""
    last: list[Any] = [-ttl - 1.0, []]

    def check() -> list[str]:
        now = time.monotonic()
        if now - last[0] > ttl:
            last[0] = now
            try:
                last[1] = firewall_hints(ports)[1]
            except Exception:  # advice only
                last[1] = []
        return list(last[1])

    return check


def plan_ports(plan: Any) -> set[int]:
    """The ports the Plan's servers bind (111 left out: rpcbind there is fine)."""
    return {p for _, p, svc in plan.bound_ports() if svc != "portmap"}


__all__ = ["firewall_check", "firewall_from_iptables", "firewall_from_nft", "firewall_hints",
           "plan_ports"]

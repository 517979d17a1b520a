"""Files on disk (issue 17, part 4 and the ENOSPC / lock-directory findings).

A local user who owns (or may write) the state directory, or plants
``events.jsonl -> /etc/...`` in a world-writable log directory, must gain
nothing: `pxewizard serve` refuses in words, with the fix, and writes nothing
through the link. A read-only lock directory (systemd's ProtectSystem=strict
without RuntimeDirectory=) and a full disk under the lease file are said in
words (EROFS / ENOSPC), never as a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.net.dhcp_support import dhcp_plan, serve_dhcp
from tests.support.netns import Netns, net_pair
from tests.support.serving import REPO
from tests.support.tools import require, require_root

ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def serve_refused(ns: Netns, plan: Path, **env: str) -> str:
    """Run `pxewizard serve` expecting it to refuse at once; its output."""
    r = ns.run(sys.executable, "-m", "pxewizard", "serve", "--plan", str(plan), check=False,
               timeout=60, env=dict(ENV, **env), cwd=str(REPO))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    return out


def test_state_dir_of_another_user_or_world_writable_is_refused(tmp_path: Path) -> None:
    require_root()
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 1000, 1000)
    plan = dhcp_plan(tmp_path)
    with net_pair() as pair:
        out = serve_refused(pair.server, plan)
        assert "state_dir" in out and "belongs to uid 1000" in out and "chown" in out, out
        os.chown(state, 0, 0)
        state.chmod(0o1777)
        out = serve_refused(pair.server, plan)
        assert "writable by other users" in out and "chmod 0750" in out, out
        assert not list(state.iterdir())  # nothing written into it


def test_planted_log_symlink_is_not_followed(tmp_path: Path) -> None:
    require_root()
    victim = tmp_path / "victim"
    victim.write_text("root:x:0:0\n")
    logdir = tmp_path / "shared"
    logdir.mkdir()
    logdir.chmod(0o1777)  # a /tmp-like directory: anyone may create files in it
    link = logdir / "events.jsonl"
    link.symlink_to(victim)
    os.lchown(link, 1000, 1000)
    plan = dhcp_plan(tmp_path, mode="proxy")
    text = plan.read_text() + f'\n[log]\njsonl = "{link}"\n'
    plan.write_text(text)
    with net_pair() as pair:
        out = serve_refused(pair.server, plan)
    assert "symbolic link" in out and f"rm {link}" in out, out
    assert victim.read_text() == "root:x:0:0\n"


def test_read_only_lock_directory_is_an_error_in_words(tmp_path: Path) -> None:
    require_root()
    run = tmp_path / "run"
    run.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(run)], check=True)
    try:
        with net_pair() as pair:
            out = serve_refused(pair.server, dhcp_plan(tmp_path, mode="proxy"),
                                PXEWIZARD_RUN_DIR=str(run / "pxewizard"))
        assert "cannot create the single-instance lock" in out and "(EROFS)" in out, out
        assert "RuntimeDirectory=pxewizard" in out, out
    finally:
        subprocess.run(["umount", "-l", str(run)], check=False)


def test_full_disk_under_the_lease_file_names_enospc(tmp_path: Path) -> None:
    require_root()
    require("udhcpc")
    disk = tmp_path / "leases"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(disk)],
                   check=True)
    try:
        plan = dhcp_plan(tmp_path, lease_file=str(disk / "leases.sqlite"))
        with net_pair() as pair, serve_dhcp(pair.server, plan) as served:
            subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=1k"],
                           capture_output=True)
            for i in range(3):
                pair.client.run("ip", "link", "set", "eth0", "address", f"52:54:00:99:0e:{i:02x}")
                pair.client.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "2", "-T", "1",
                                "-s", "/bin/true", check=False, timeout=20)
                if any("cannot write the lease file" in ln for ln in served.output):
                    break
            time.sleep(0.5)
            errs = [ln for ln in served.output if "cannot write the lease file" in ln]
            assert errs, "\n".join(served.output[-20:])
            assert "no space left on device (ENOSPC)" in errs[0], errs[0]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_corrupt_lease_file_is_refused_at_start_with_the_fix(tmp_path: Path) -> None:
    require_root()
    from tests.unit.test_dhcp_leases import _corrupt_an_index_page

    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    lease = state / "leases.sqlite"
    _corrupt_an_index_page(lease)  # a page the start-up query never reads
    with net_pair() as pair:
        out = serve_refused(pair.server, dhcp_plan(tmp_path))
    assert "is corrupt" in out and f"mv {lease} {lease}.corrupt" in out, out

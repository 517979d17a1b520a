"""Issue 9: what `pxewizard export --format dnsmasq --format nginx` writes really boots.

The Plan of the ``bios_pxelinux_http`` case is exported with the real CLI;
then the real dnsmasq (DHCP + TFTP, ``-C DIR/dnsmasq.conf``) and the real
nginx (HTTP, ``-c DIR/nginx.conf``) serve ``DIR/tftpboot`` in the server
namespace instead of ``pxewizard serve``. SeaBIOS + QEMU's iPXE ROM gets
pxelinux.0, the generated menu and the kernel over TFTP and stage 3 over HTTP;
the guest must print the stage-3 file's own sha256.

Only what a test machine needs is overridden, on the command line or with
``-g``: pid and lease files in the test's directory, logs to our file, and
``user root`` for both servers (pytest's temporary directories are 0700, so
the unprivileged users dnsmasq and nginx drop to could not read the tree).
nginx cannot override a directive the file already sets, so its one ``pid``
line is pointed at the test directory in a copy of the exported file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.serving import REPO, write_plan
from tests.support.tools import require

from .cases import BY_NAME, check, prepare
from .harness import SERVER_IP, boot, lab_network

CASE = BY_NAME["bios_pxelinux_http"]


def _export(plan_path: Path, dest: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "pxewizard", "export", "--plan", str(plan_path),
                           "--to", str(dest), "--format", "dnsmasq", "--format", "nginx"],
                          check=False, env=env, cwd=str(REPO), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"pxewizard export failed:\n{proc.stdout}\n{proc.stderr}"


def _wait_listening(ns, what: str, proc: subprocess.Popen, log: Path, pattern: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        if ns.run("sh", "-c", f"ss -lnu -lnt | grep -q '{pattern}'", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} is not listening ({pattern}):\n{log.read_text()}")


@pytest.mark.timeout(420)
def test_export_dnsmasq_nginx_boots(guest, timing, tmp_path: Path) -> None:
    require("dnsmasq", "nginx")
    prep = prepare(CASE, guest, tmp_path)
    plan_path = write_plan(tmp_path, prep.plan)
    out = tmp_path / "export"
    _export(plan_path, out)
    tree = out / "tftpboot"
    for f in ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "boot/vmlinuz",
              "boot/initrd.gz", "stage3.bin"):
        assert (tree / f).is_file(), f"export wrote no tftpboot/{f}"

    run = tmp_path / "run"
    run.mkdir()
    nginx_conf = run / "nginx.conf"
    text, n = re.subn(r"(?m)^pid\s+[^;]+;", f"pid {run / 'nginx.pid'};",
                      (out / "nginx.conf").read_text())
    assert n == 1, "the exported nginx.conf should set exactly one pid"
    nginx_conf.write_text(text)
    nginx_log, dnsmasq_log = run / "nginx.log", run / "dnsmasq.log"

    with lab_network() as net:
        try:
            with open(nginx_log, "wb") as lf:
                nginx = net.server.popen(
                    "nginx", "-c", str(nginx_conf), "-e", str(run / "nginx-error.log"),
                    "-g", f"daemon off; user root; error_log {run / 'nginx-error.log'} info;",
                    stdout=lf)
            _wait_listening(net.server, "nginx", nginx, nginx_log, f"{SERVER_IP}:80 ")
            with open(dnsmasq_log, "wb") as lf:
                dnsmasq = net.server.popen(
                    "dnsmasq", "--no-daemon", "-C", str(out / "dnsmasq.conf"),
                    f"--pid-file={run / 'dnsmasq.pid'}",
                    f"--dhcp-leasefile={run / 'dnsmasq.leases'}", "--user=root",
                    "--log-facility=-", stdout=lf)
            _wait_listening(net.server, "dnsmasq", dnsmasq, dnsmasq_log, ":69 ")
            b = boot(net, "export_dnsmasq_nginx", prep.stage3_sha)
        finally:
            net.server.kill_all()
    timing.append((b.case, b.result.seconds,
                   "ok" if b.printed_sha == prep.stage3_sha else "FAILED"))
    log = dnsmasq_log.read_text(errors="replace")
    check(b)
    # The boot took the exported path: dnsmasq leased the address and sent the loader, its
    # menu and the kernel over TFTP (stage 3 came from nginx: the guest's wget checksum).
    assert "DHCPACK(pxe0)" in log, log[-3000:]
    for f in ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "boot/vmlinuz",
              "boot/initrd.gz"):
        assert re.search(rf"sent \S*/tftpboot/{re.escape(f)} to ", log), \
            f"dnsmasq did not send {f} over TFTP:\n{log[-3000:]}"

"""The offline release: one executable file that runs on a rescue system with no network.

Builds dist/pxewizard.pex with scripts/build-release, then runs it inside a
fresh network namespace (no route anywhere) with a bare Python virtual
environment that has none of our dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.netns import link_netns, namespace
from tests.support.serving import REPO
from tests.support.tools import require_root

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    subprocess.run(["bash", str(REPO / "scripts/build-release")], check=True, env=env,
                   capture_output=True, timeout=800)
    pex = out / "pxewizard.pex"
    assert pex.is_file() and os.access(pex, os.X_OK)
    assert (out / "wheelhouse" / "install.sh").is_file()
    wheels = {p.name for p in (out / "wheelhouse").glob("*.whl")}
    for arch in ("x86_64", "aarch64"):
        for abi in ("cp311", "cp312", "cp313"):
            assert any(f"{abi}-{abi}" in w and arch in w for w in wheels
                       if w.startswith("pydantic_core")), (abi, arch)
    print(f"\nrelease artefact: {pex.stat().st_size / 2**20:.1f} MiB; wheelhouse "
          f"{sum(p.stat().st_size for p in (out / 'wheelhouse').iterdir()) / 2**20:.1f} MiB")
    return pex


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    probe = subprocess.run([str(py), "-c", "import aiohttp"], capture_output=True)
    assert probe.returncode != 0, "the bare environment must not have our dependencies"
    return py


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return time.perf_counter() - t0, r.stdout


def test_runs_offline_in_bare_python(artefact: Path, bare_python: Path, tmp_path: Path) -> None:
    require_root()
    env = {"PATH": os.environ["PATH"], "PEX_ROOT": str(tmp_path / "pexroot"),
           "HOME": str(tmp_path)}
    with namespace("rel") as ns:
        routes = ns.run("ip", "route").stdout.strip()
        assert routes == ""
        cmd = ns.cmd(str(bare_python), str(artefact), "--version")
        first, out = _timed(cmd, env)
        assert out.startswith("pxewizard ") and "textual" in out
        warm = min(_timed(cmd, env)[0] for _ in range(3))
    installed = min(_timed([sys.executable, "-m", "pxewizard", "--version"],
                           dict(os.environ))[0] for _ in range(3))
    print(f"\nstartup --version: zipapp first run {first:.2f} s, warm {warm:.2f} s; "
          f"installed package {installed:.2f} s; ratio warm/installed {warm / installed:.2f}x")


def test_serves_offline_in_namespace(artefact: Path, bare_python: Path, tmp_path: Path) -> None:
    """`serve --plan examples/proxydhcp-http.toml` as it is, from the artefact, no network."""
    require_root()
    plan = REPO / "examples" / "proxydhcp-http.toml"
    media = REPO / "examples" / "demo-media"
    env = {"PATH": os.environ["PATH"], "PEX_ROOT": str(tmp_path / "pexroot"),
           "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with namespace("rel") as ns, namespace("relc") as cl:
        link_netns(ns, "pxe0", cl, "eth0", a_addr="10.99.0.1/24", b_addr="10.99.0.10/24")
        assert ns.run("ip", "route", "get", "1.1.1.1", check=False).returncode != 0
        proc = ns.popen(str(bare_python), str(artefact), "serve", "--plan", str(plan), env=env,
                        bufsize=0)
        deadline = time.monotonic() + 90
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if "ready: serving" in line:
                break
        assert any("ready: serving" in x for x in lines), "".join(lines)
        r = cl.run("curl", "-sf", "http://10.99.0.1/boot.ipxe")
        assert r.stdout.startswith("#!ipxe")
        r = subprocess.run(cl.cmd("curl", "-sf", "tftp://10.99.0.1/sysresccd/boot/x86_64/vmlinuz"),
                           capture_output=True, timeout=30)
        assert r.stdout == (media / "sysresccd/boot/x86_64/vmlinuz").read_bytes()

"""Regenerate the event sequences of this folder: ``python3 tests/data/timeline/make.py``.

Each sequence follows a real client's packets (the QEMU captures in
../shared/captures: SeaBIOS + iPXE ROM with pxelinux, OVMF native PXE with
syslinux.efi and its tsize probe, iPXE EFI) with the timing seen there, turned
into the events our servers publish; the faults are injected into those
sequences the way the servers report them. Sequences recorded from the
`tests/net` runs sit beside them (``net-*.jsonl``).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = 1_763_800_000.0
MAC = "52:54:00:99:00:10"
IP = "10.99.0.115"
SRV = "10.99.0.1"
PEER = f"{IP}:2070"
SEARCH = ["pxelinux.cfg/01-52-54-00-99-00-10", "pxelinux.cfg/0A630073", "pxelinux.cfg/0A63007",
          "pxelinux.cfg/0A6300", "pxelinux.cfg/0A630", "pxelinux.cfg/0A63", "pxelinux.cfg/0A6",
          "pxelinux.cfg/0A", "pxelinux.cfg/0"]


class Seq:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def ev(self, t: float, kind: str, **kw) -> None:
        self.events.append({"kind": kind, "ts": round(T0 + t, 3), **kw})

    def started(self, t: float) -> None:
        for svc, port, proto in (("tftp", 69, "udp"), ("http", 80, "tcp"), ("dhcp", 67, "udp")):
            self.ev(t, "service_started", service=svc, address=SRV, port=port, proto=proto)

    def dhcp(self, t: float, msg_in: str, msg_out: str, *, xid: int = 0xD917A959, arch=0,
             arch_name="BIOS", vc="PXEClient:Arch:00000:UNDI:002001", uc="", yiaddr=IP,
             boot_file="pxelinux.0", reason="", service="dhcp", mac=MAC, requested_ip="",
             cause="") -> None:
        self.ev(t, "dhcp_exchange", client=mac, service=service, mac=mac, xid=xid, msg_in=msg_in,
                msg_out=msg_out, arch=arch, arch_name=arch_name, vendor_class=vc, user_class=uc,
                yiaddr=yiaddr if msg_out in ("OFFER", "ACK") else "", requested_ip=requested_ip,
                boot_file=boot_file if msg_out in ("OFFER", "ACK") else "",
                next_server=SRV if msg_out in ("OFFER", "ACK") else "", reason=reason,
                **({"cause": cause} if cause else {}))

    def bios_dhcp(self, t: float = 0.0, **kw) -> None:
        self.dhcp(t, "DISCOVER", "OFFER", **kw)
        self.dhcp(t + 1.0, "DISCOVER", "OFFER", **kw)
        self.dhcp(t + 3.03, "REQUEST", "ACK", **kw)

    def get(self, t: float, path: str, size: int, secs: float = 0.01, *, service="tftp",
            options=None, peer=PEER, client=IP, status=0) -> None:
        opts = options if options is not None else {"tsize": str(size), "blksize": "1408"}
        self.ev(t, "transfer_started", client=client, service=service, path=path, size=size,
                options=opts, peer=peer)
        if secs > 0.5:
            for i in range(1, int(secs * 4)):
                self.ev(t + i * 0.25, "transfer_progress", client=client, service=service,
                        path=path, sent=int(size * i * 0.25 / secs), size=size, peer=peer)
        self.ev(t + secs, "transfer_done", client=client, service=service, path=path, sent=size,
                seconds=secs, status=status, peer=peer)

    def miss(self, t: float, path: str, *, service="tftp", client=IP, code=1, reason=None,
             cause="not_found") -> None:
        self.ev(t, "transfer_failed", client=client, service=service, path=path, code=code,
                reason=reason or f"file not found: {path}", cause=cause, peer=PEER)

    def search(self, t: float, prefix: str = "") -> float:
        for i, name in enumerate(SEARCH):
            self.miss(t + i * 0.002, prefix + name)
        return t + len(SEARCH) * 0.002

    def pxelinux(self, t: float = 16.14, kernel: str = "vmlinuz", initrd: str = "initrd.gz",
                 prefix: str = "") -> float:
        loader = "efi64/syslinux.efi" if prefix else "pxelinux.0"
        ld = prefix + ("ldlinux.e64" if prefix else "ldlinux.c32")
        if not prefix:
            self.get(t, loader, 46_468, 0.2, options={"blksize": "1432", "tsize": "0"})
        self.get(t + 0.29, ld, 122_308, 0.2)
        t = self.search(t + 0.51, prefix)
        self.get(t, prefix + "pxelinux.cfg/default", 412)
        self.get(t + 0.02, prefix + "menu.c32", 26_356)
        self.get(t + 0.06, prefix + "libutil.c32", 24_148)
        self.get(t + 0.15, prefix + "pxelinux.cfg/default", 412)
        self.get(t + 1.73, prefix + kernel, 8_123_456, 3.3)
        self.get(t + 5.06, prefix + initrd, 31_234_567, 13.9)
        return t + 19.0

    def write(self, name: str) -> None:
        path = HERE / f"{name}.jsonl"
        path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in self.events))


def main() -> None:
    # healthy BIOS boot: iPXE ROM -> pxelinux -> config search -> kernel -> initramfs ->
    # udhcpc in the initramfs -> HTTP stage 3 (one-byte range probe, then the image)
    s = Seq()
    s.started(-5)
    s.bios_dhcp(0.0, uc="iPXE")
    t = s.pxelinux()
    s.dhcp(t + 0.7, "DISCOVER", "OFFER", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.dhcp(t + 0.73, "REQUEST", "ACK", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.get(t + 2, "sysresccd/x86_64/airootfs.sfs", 1, 0.01, service="http",
          options={"range": "bytes=0-0"}, peer=f"{IP}:40000", status=206)
    s.get(t + 2.1, "sysresccd/x86_64/airootfs.sha512", 150, 0.01, service="http", options={},
          peer=f"{IP}:40002", status=200)
    s.get(t + 2.2, "sysresccd/x86_64/airootfs.sfs", 734_003_200, 9.0, service="http",
          options={}, peer=f"{IP}:40004", status=200)
    s.ev(t + 30, "console_line", client=MAC, vm="lab", line="Welcome to SystemRescue")
    s.write("bios-pxelinux-http-ok")

    # OVMF native PXE: tsize probe aborted with ERROR 8, syslinux.efi, second DHCP without
    # option 93, ldlinux.e64, the config search under efi64/, kernel, initramfs
    s = Seq()
    s.started(-5)
    vc = "PXEClient:Arch:00007:UNDI:003016"
    s.dhcp(0.0, "DISCOVER", "OFFER", xid=0xE054177B, arch=7, arch_name="EFI x64", vc=vc,
           boot_file="efi64/syslinux.efi")
    s.dhcp(3.72, "REQUEST", "ACK", xid=0xE054177B, arch=7, arch_name="EFI x64", vc=vc,
           boot_file="efi64/syslinux.efi")
    s.ev(3.74, "transfer_started", client=IP, service="tftp", path="efi64/syslinux.efi",
         size=211_008, options={"tsize": "211008", "blksize": "1468", "windowsize": "4"},
         peer=PEER)
    s.ev(3.742, "transfer_failed", client=IP, service="tftp", path="efi64/syslinux.efi", code=8,
         reason="size probe: the client read the OACK (tsize=211008) and ended the transfer",
         cause="client_aborted", probe=True, peer=PEER)
    s.get(3.756, "efi64/syslinux.efi", 211_008, 0.05,
          options={"blksize": "1468", "windowsize": "4"}, peer=f"{IP}:2071")
    s.dhcp(3.83, "DISCOVER", "OFFER", xid=0xE054177E, arch=None, arch_name="",
           vc="PXEClient", boot_file="efi64/syslinux.efi")
    s.dhcp(7.72, "REQUEST", "ACK", xid=0xE054177E, arch=None, arch_name="", vc="PXEClient",
           boot_file="efi64/syslinux.efi")
    s.pxelinux(7.45, prefix="efi64/")
    s.write("uefi-ovmf-syslinux-ok")

    # iPXE EFI via OVMF: ipxe.efi, then iPXE's DHCP gets the script, kernel and initrd
    s = Seq()
    s.started(-5)
    vc = "PXEClient:Arch:00007:UNDI:003016"
    s.dhcp(0.0, "DISCOVER", "OFFER", xid=0x702FE0A4, arch=7, arch_name="EFI x64", vc=vc,
           boot_file="ipxe.efi")
    s.dhcp(3.69, "REQUEST", "ACK", xid=0x702FE0A4, arch=7, arch_name="EFI x64", vc=vc,
           boot_file="ipxe.efi")
    s.ev(3.706, "transfer_started", client=IP, service="tftp", path="ipxe.efi", size=1_034_560,
         options={"tsize": "1034560", "blksize": "1468", "windowsize": "4"}, peer=PEER)
    s.ev(3.708, "transfer_failed", client=IP, service="tftp", path="ipxe.efi", code=8,
         reason="size probe: the client read the OACK and ended the transfer", probe=True,
         cause="client_aborted", peer=PEER)
    s.get(3.726, "ipxe.efi", 1_034_560, 0.3, options={"blksize": "1468", "windowsize": "4"})
    ipxe_vc = "PXEClient:Arch:00007:UNDI:003010"
    for i, (mi, mo) in enumerate((("DISCOVER", "OFFER"), ("DISCOVER", "OFFER"),
                                  ("REQUEST", "ACK"))):
        s.dhcp(10.44 + (0, 1.0, 3.0)[i], mi, mo, xid=0x5D06F543, arch=7, arch_name="EFI x64",
               vc=ipxe_vc, uc="iPXE", boot_file="http://10.99.0.1/boot.ipxe",
               reason="iPXE client (user class iPXE / option 175): its script over HTTP")
    s.ev(28.03, "transfer_failed", client=IP, service="tftp", path="autoexec.ipxe", code=1,
         reason="file not found: autoexec.ipxe", cause="not_found", peer=PEER)
    s.get(28.04, "boot.ipxe", 312, 0.01, service="http", options={}, peer=f"{IP}:50000",
          status=200)
    s.get(28.05, "vmlinuz", 8_123_456, 1.2, service="http", options={}, peer=f"{IP}:50002",
          status=200)
    s.get(29.31, "initrd.gz", 31_234_567, 2.5, service="http", options={}, peer=f"{IP}:50004",
          status=200)
    s.write("uefi-ipxe-http-ok")

    # a missing boot loader
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.miss(16.14, "pxelinux.0")
    s.miss(17.2, "pxelinux.0")
    s.write("fault-loader-missing")

    # ldlinux.c32 mode 0600
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.get(16.14, "pxelinux.0", 46_468, 0.2)
    s.miss(16.43, "ldlinux.c32", code=2, cause="permission",
           reason="ldlinux.c32: file must have global read permissions (mode 0600; fix: chmod "
                  "o+r /srv/tftp/ldlinux.c32)")
    s.write("fault-mode-0600")

    # a kernel named .bin in the pxelinux menu
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.pxelinux(kernel="rescue64.bin", initrd="initram.igz")
    s.write("fault-bin-kernel")

    # pxelinux.0 and ldlinux.c32 load, then silence (ldlinux from another syslinux version)
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.get(16.14, "pxelinux.0", 46_468, 0.2)
    s.get(16.43, "ldlinux.c32", 122_308, 0.2)
    s.write("fault-ldlinux-mismatch")

    # UEFI client (arch 7) handed the BIOS pxelinux.0
    s = Seq()
    s.started(-5)
    vc = "PXEClient:Arch:00007:UNDI:003016"
    s.dhcp(0.0, "DISCOVER", "OFFER", arch=7, arch_name="EFI x64", vc=vc)
    s.dhcp(3.72, "REQUEST", "ACK", arch=7, arch_name="EFI x64", vc=vc)
    s.ev(3.74, "transfer_started", client=IP, service="tftp", path="pxelinux.0", size=46_468,
         options={"tsize": "46468", "blksize": "1468", "windowsize": "4"}, peer=PEER)
    s.ev(3.742, "transfer_failed", client=IP, service="tftp", path="pxelinux.0", code=8,
         reason="size probe", cause="client_aborted", probe=True, peer=PEER)
    s.get(3.756, "pxelinux.0", 46_468, 0.05, options={"blksize": "1468", "windowsize": "4"})
    s.write("fault-wrong-arch")

    # the kernel transfer times out half-way (blksize 8192 over a 1500-byte path)
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.get(16.14, "pxelinux.0", 46_468, 0.2)
    s.get(16.43, "ldlinux.c32", 122_308, 0.2)
    t = s.search(16.65)
    s.get(t, "pxelinux.cfg/default", 412)
    s.ev(t + 1.7, "transfer_started", client=IP, service="tftp", path="vmlinuz", size=8_123_456,
         options={"tsize": "8123456", "blksize": "8192"}, peer=PEER)
    s.ev(t + 2.2, "transfer_progress", client=IP, service="tftp", path="vmlinuz", sent=1_048_576,
         size=8_123_456, peer=PEER)
    s.ev(t + 33.7, "transfer_failed", client=IP, service="tftp", path="vmlinuz", sent=1_064_960,
         code=0, reason="timed out after 5 retries waiting for the ACK of block 130",
         cause="timeout", peer=PEER)
    s.write("fault-tftp-timeout")

    # iPXE handed undionly.kpxe again and again
    s = Seq()
    s.started(-5)
    s.bios_dhcp(boot_file="undionly.kpxe")
    s.get(16.1, "undionly.kpxe", 70_000, 0.1)
    for i in range(3):
        t = 20.0 + i * 8
        s.dhcp(t, "DISCOVER", "OFFER", xid=0x100 + i, uc="iPXE", boot_file="undionly.kpxe")
        s.dhcp(t + 2, "REQUEST", "ACK", xid=0x100 + i, uc="iPXE", boot_file="undionly.kpxe")
        s.get(t + 3, "undionly.kpxe", 70_000, 0.1)
    s.write("fault-ipxe-loop")

    # kernel + initramfs, the kernel's udhcpc, then nothing (wrong command line)
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    t = s.pxelinux()
    s.dhcp(t + 0.7, "DISCOVER", "OFFER", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.dhcp(t + 0.73, "REQUEST", "ACK", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.write("fault-no-stage3")

    # NFS: the kernel goes straight to 2049 with NFSv4
    s = Seq()
    s.started(-5)
    s.ev(-5, "service_started", service="nfs", address=SRV, port=2049, proto="tcp")
    s.bios_dhcp()
    t = s.pxelinux()
    s.dhcp(t + 0.7, "DISCOVER", "OFFER", xid=0x77, arch=None, arch_name="", vc="", boot_file="")
    s.dhcp(t + 0.73, "REQUEST", "ACK", xid=0x77, arch=None, arch_name="", vc="", boot_file="")
    s.ev(t + 1.5, "packet_dropped", client=IP, service="nfs", peer=f"{IP}:740", size=196,
         reason="RPC program 100003 (NFS) version 4 is not served (this server speaks "
                "version 3): answered PROG_MISMATCH 3-3")
    s.write("fault-nfs-v4")

    # HTTP copy to RAM stops at 40% (and the lab console shows the OOM killer)
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    t = s.pxelinux()
    s.ev(t + 2, "transfer_started", client=IP, service="http",
         path="sysresccd/x86_64/airootfs.sfs", size=734_003_200, options={}, peer=f"{IP}:40004")
    for i in range(1, 12):
        s.ev(t + 2 + i * 0.25, "transfer_progress", client=IP, service="http",
             path="sysresccd/x86_64/airootfs.sfs", sent=i * 26_000_000, size=734_003_200,
             peer=f"{IP}:40004")
    s.write("fault-ram-http-stall")
    s.ev(t + 6, "console_line", client=MAC, vm="lab",
         line="[   21.312] Out of memory: Killed process 1 (init) total-vm:12345kB")
    s.write("fault-ram-console")

    # another DHCP server answers faster; the client requests its offer
    s = Seq()
    s.started(-5)
    s.ev(-4, "dhcp_server_seen", server_id="10.99.0.2", server_mac="52:54:00:99:00:02",
         offered_ip="10.99.0.50", router="10.99.0.2", boot_file="")
    s.dhcp(0.0, "DISCOVER", "OFFER")
    s.dhcp(1.0, "DISCOVER", "OFFER")
    s.dhcp(1.2, "REQUEST", "-", reason="the client chose DHCP server 10.99.0.2")
    s.write("fault-other-server-won")

    # we offer, the client never requests (no other server seen)
    s = Seq()
    s.started(-5)
    for i in range(4):
        s.dhcp(i * 2.0, "DISCOVER", "OFFER")
    s.write("fault-offer-ignored")

    # a rogue DHCP server in a full-DHCP segment
    s = Seq()
    s.started(-5)
    s.ev(2.0, "dhcp_server_seen", server_id="10.99.0.2", server_mac="52:54:00:99:00:02",
         offered_ip="10.99.0.50", router="10.99.0.2", boot_file="")
    s.write("fault-competing-dhcp")

    # services up, nothing ever asks
    s = Seq()
    s.started(0)
    s.write("fault-no-dhcp")

    # the pool is full
    s = Seq()
    s.started(-5)
    for i in range(3):
        s.dhcp(i * 1.0, "DISCOVER", "-", reason="pool exhausted: all 2 addresses of "
               "10.99.0.100-10.99.0.101 are leased or offered; no offer (enlarge the pool or "
               "shorten lease_time)", cause="pool_full")
    s.write("fault-pool-full")

    # an arch-11 client (ARM64 UEFI) and no efi_arm64 boot file
    s = Seq()
    s.started(-5)
    for i in range(3):
        s.dhcp(i * 2.0, "DISCOVER", "-", arch=11, arch_name="EFI ARM64",
               vc="PXEClient:Arch:00011:UNDI:003000",
               reason="option 93 = 11 (EFI ARM64) but dhcp.boot_files.efi_arm64 is not set; "
                      "set it to boot such clients", cause="no_boot_file")
    s.write("fault-no-boot-file-arch")

    # proxy mode: a laptop's DHCP is not ours to answer (normal, info only)
    s = Seq()
    for svc, port in (("proxydhcp", 67), ("proxydhcp", 4011), ("tftp", 69)):
        s.ev(-5, "service_started", service=svc, address=SRV, port=port, proto="udp")
    s.dhcp(0.0, "DISCOVER", "-", service="proxydhcp", arch=None, arch_name="",
           vc="MSFT 5.0", reason="not a PXE client (vendor class 'MSFT 5.0'): proxyDHCP "
                                "answers PXE clients only")
    s.write("proxy-not-pxe")

    # ACK with a boot file, then no TFTP at all
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.write("fault-ack-no-tftp")

    # stage 3 404: archisobasedir does not match the media
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    t = s.pxelinux()
    s.ev(t + 2, "transfer_failed", client=IP, service="http", path="arch/x86_64/airootfs.sfs",
         code=404, reason="file not found: arch/x86_64/airootfs.sfs", cause="not_found",
         peer=f"{IP}:40000")
    s.write("fault-stage3-404")

    # the initramfs transfer stops mid-way, no failure reported yet
    s = Seq()
    s.started(-5)
    s.bios_dhcp()
    s.get(16.14, "pxelinux.0", 46_468, 0.2)
    s.get(16.43, "ldlinux.c32", 122_308, 0.2)
    t = s.search(16.65)
    s.get(t, "pxelinux.cfg/default", 412)
    s.get(t + 1.7, "vmlinuz", 8_123_456, 3.3)
    s.ev(t + 5.1, "transfer_started", client=IP, service="tftp", path="initrd.gz",
         size=31_234_567, options={"tsize": "31234567", "blksize": "1408"}, peer=PEER)
    s.ev(t + 5.6, "transfer_progress", client=IP, service="tftp", path="initrd.gz",
         sent=2_000_000, size=31_234_567, peer=PEER)
    s.write("fault-stall-initramfs")

    # proxyDHCP: BIOS ROM gets our proxy offer, its address from another server; TFTP
    # requests come from an address we never handed out (joined through the neighbour table)
    s = Seq()
    for svc, port in (("proxydhcp", 67), ("proxydhcp", 4011), ("tftp", 69)):
        s.ev(-5, "service_started", service=svc, address=SRV, port=port, proto="udp")
    s.dhcp(0.0, "DISCOVER", "OFFER", service="proxydhcp", yiaddr="")
    s.dhcp(3.0, "REQUEST", "-", service="proxydhcp", reason="REQUEST for the DHCP server")
    s.get(4.0, "pxelinux.0", 46_468, 0.2, client="10.99.0.77", peer="10.99.0.77:2070")
    s.get(4.3, "ldlinux.c32", 122_308, 0.2, client="10.99.0.77", peer="10.99.0.77:2071")
    t = 4.6
    for i, name in enumerate(SEARCH):
        s.miss(t + i * 0.002, name, client="10.99.0.77")
    t += 0.02
    for i, name in enumerate(("pxelinux.cfg/default", "menu.c32", "libutil.c32",
                              "pxelinux.cfg/default")):
        s.get(t + i * 0.05, name, 412, client="10.99.0.77", peer="10.99.0.77:2072")
    s.get(t + 1.7, "vmlinuz", 8_123_456, 3.3, client="10.99.0.77", peer="10.99.0.77:2073")
    s.get(t + 5.1, "initrd.gz", 31_234_567, 13.9, client="10.99.0.77", peer="10.99.0.77:2074")
    s.get(t + 25, "sysresccd/x86_64/airootfs.sfs", 734_003_200, 9.0, service="http",
          options={}, client="10.99.0.77", peer="10.99.0.77:40004", status=200)
    s.write("proxy-bios-ok")
    stalls()


def plan(s: Seq, t: float, mode: str = "full", **kw) -> None:
    """The PlanLoaded event serve logs at start."""
    s.ev(t, "plan_loaded", dhcp_mode=mode, server_ip=SRV, interface="pxe0", transport="http",
         menu_timeout=10, **kw)


def stalls() -> None:
    """Issue 21: each stall, timed like the captures, with the fault injected."""
    # a client-side bridge runs STP (forward delay 15 s): BPDUs reach us every 2 s and the
    # ROM's first DISCOVER gets through 30 s after it began (secs = 30)
    s = Seq()
    s.started(-5)
    s.ev(-3.2, "bpdu_seen", interface="pxe0", bridge_id="8000.52:54:00:99:00:fe",
         root_id="8000.52:54:00:99:00:fe", protocol="stp", forward_delay=15.0, hello=2.0)
    s.ev(30.0, "dhcp_exchange", client=MAC, service="dhcp", mac=MAC, xid=0xD917A959,
         msg_in="DISCOVER", msg_out="OFFER", arch=0, arch_name="BIOS",
         vendor_class="PXEClient:Arch:00000:UNDI:002001", user_class="", yiaddr=IP,
         requested_ip="", boot_file="pxelinux.0", next_server=SRV, secs=30, reason="")
    s.write("fault-stp-forward-delay")

    # stage 3 on a wrong host: extra_cmdline names 10.99.0.77; kernel and initrd come, the
    # kernel's udhcpc gets its lease, then nothing reaches us
    s = Seq()
    s.started(-5)
    plan(s, -5, cmdlines=["archisobasedir=sysresccd archiso_http_srv=http://10.99.0.77/"],
         stage3_elsewhere=["http://10.99.0.77/"])
    s.bios_dhcp()
    t = s.pxelinux()
    s.dhcp(t + 0.7, "DISCOVER", "OFFER", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.dhcp(t + 0.73, "REQUEST", "ACK", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.write("fault-stage3-other-host")

    # stage 3 file deleted: the command line names sysrcd.dat, only its .md5 is left
    s = Seq()
    s.started(-5)
    plan(s, -5)
    s.bios_dhcp()
    t = s.pxelinux(kernel="sysresccd/boot/x86_64/vmlinuz",
                   initrd="sysresccd/boot/x86_64/sysresccd.img")
    s.dhcp(t + 0.7, "DISCOVER", "OFFER", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.dhcp(t + 0.73, "REQUEST", "ACK", xid=0xF80BC932, arch=None, arch_name="",
           vc="udhcp 1.36.1", boot_file="")
    s.ev(t + 2, "transfer_failed", client=IP, service="http", path="sysresccd/x86_64/sysrcd.dat",
         code=404, reason="file not found: sysresccd/x86_64/sysrcd.dat", cause="not_found",
         peer=f"{IP}:40000")
    s.write("fault-stage3-deleted")

    # a firewall on the server drops UDP 69: ACK with a boot file, no request reaches us;
    # the ROM gives up and asks DHCP again 62 s later (a new xid), still nothing
    s = Seq()
    s.started(-5)
    plan(s, -5)
    s.bios_dhcp()
    s.bios_dhcp(65.0, xid=0xD917A960)
    s.write("fault-firewall-tftp")

    # blksize above the path MTU (links at MTU 1000, the ROM asks 1468): OACK acknowledged,
    # block 1 sent again without an ACK; the server grants 512 and the retry goes through
    s = Seq()
    s.started(-5)
    plan(s, -5)
    s.bios_dhcp()
    s.ev(16.14, "transfer_started", client=IP, service="tftp", path="pxelinux.0", size=46_468,
         options={"tsize": "46468", "blksize": "1468"}, peer=PEER)
    s.ev(19.15, "blksize_granted", client=IP, service="tftp", peer=PEER, path="pxelinux.0",
         asked=1468, granted=512, packet=1500, path_mtu=0)
    s.ev(79.2, "transfer_failed", client=IP, service="tftp", path="pxelinux.0", sent=0, code=0,
         reason="timed out after 5 retries waiting for the ACK of block 1 of 32 (63 s without "
                "an answer)", cause="timeout", peer=PEER)
    s.write("fault-blksize-mtu")

    # our generated menu (LINUX) with a kernel named vmlinuz.bin: boots fine, no finding
    s = Seq()
    s.started(-5)
    plan(s, -5, bin_kernels=[])
    s.bios_dhcp()
    s.pxelinux(kernel="vmlinuz.bin")
    s.write("ok-linux-bin-kernel")
    # a hand-written pxelinux.cfg/default in tftp.root with `KERNEL rescue64.bin`
    s = Seq()
    s.started(-5)
    plan(s, -5, bin_kernels=["pxelinux.cfg/default:rescue64.bin"])
    s.bios_dhcp()
    t = s.pxelinux(kernel="rescue64.bin", initrd="initram.igz")
    s.write("fault-kernel-bin-line")

    # NFSv4: the RPC layer answers PROG_MISMATCH and says so in an event
    s = Seq()
    s.started(-5)
    plan(s, -5)
    s.ev(-5, "service_started", service="nfs", address=SRV, port=2049, proto="tcp")
    s.bios_dhcp()
    t = s.pxelinux()
    s.dhcp(t + 0.7, "DISCOVER", "OFFER", xid=0x77, arch=None, arch_name="", vc="", boot_file="")
    s.dhcp(t + 0.73, "REQUEST", "ACK", xid=0x77, arch=None, arch_name="", vc="", boot_file="")
    s.ev(t + 1.5, "rpc_version_refused", client=IP, service="nfs", peer=f"{IP}:740",
         program=100003, version=4, low=3, high=3)
    s.write("fault-nfs-v4-rpc")

    # a competing DHCP server, and the log ends with a clean stop (replay keeps the mode)
    s = Seq()
    s.started(-5)
    plan(s, -5)
    s.ev(2.0, "dhcp_server_seen", server_id="10.99.0.2", server_mac="52:54:00:99:00:02",
         offered_ip="10.99.0.50", router="10.99.0.2", boot_file="")
    for svc in ("tftp", "http", "dhcp"):
        s.ev(70.0, "service_stopped", service=svc)
    s.write("fault-competing-dhcp-stopped")
    s = Seq()
    s.started(0)
    plan(s, 0)
    for svc in ("tftp", "http", "dhcp"):
        s.ev(70.0, "service_stopped", service=svc)
    s.write("fault-no-dhcp-stopped")


if __name__ == "__main__":
    main()

"""What an existing DHCP server needs so its clients boot from us (mode "none").

Text only: next-server (siaddr, option 66) and the boot file per client
architecture (option 93: 0 BIOS, 6 EFI IA32, 7 and 9 EFI x64, 11 ARM64), and for
iPXE clients the URL of the iPXE script (handing iPXE the loader again loops),
for ISC dhcpd, dnsmasq, Kea, and in words for anything else.

Every path is the Plan's own (``dhcp.boot_files``, ``http_base``), the very
names the servers serve, as ``pxewizard export`` writes them: a snippet with a
path of its own would send clients after a file that is not there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...plan import Plan

_ARCH_WORDS = {"bios": "BIOS clients (arch 0)", "efi64": "UEFI x64 clients (arch 7 and 9)",
               "efi32": "UEFI IA32 clients (arch 6)", "arm64": "UEFI ARM64 clients (arch 11)"}


def boot_paths(plan: Plan) -> list[tuple[str, str]]:
    """(who, path or URL) for every boot file a snippet names."""
    from ...export import _arch_files, _ipxe_url

    out = [(_ARCH_WORDS[tag], file) for tag, _, file in _arch_files(plan)]
    url = _ipxe_url(plan)
    if url:
        out.append(("iPXE clients (user class iPXE)", url))
    return out


def snippets(plan: Plan) -> list[tuple[str, str]]:
    """(title, configuration text) for each DHCP server we know."""
    from ...export import _arch_files, _ipxe_url

    ip, url, arches = plan.server_ip, _ipxe_url(plan), _arch_files(plan)
    bios = plan.dhcp.boot_files.bios
    isc = ["# /etc/dhcp/dhcpd.conf, inside the subnet block",
           "option arch code 93 = unsigned integer 16;", f"next-server {ip};"]
    cond = "if"
    if url:
        isc += [f'{cond} exists user-class and option user-class = "iPXE" {{',
                f'  filename "{url}";']
        cond = "} elsif"
    for _, values, file in arches:
        test = " or ".join(f"option arch = 00:{v:02x}" for v in values)
        isc += [f"{cond} {test} {{", f'  filename "{file}";']
        cond = "} elsif"
    isc += ["} else {", f'  filename "{bios}";', "}"]

    dnsmasq = ["# /etc/dnsmasq.d/pxe.conf"]
    if url:
        dnsmasq += ["dhcp-userclass=set:ipxe,iPXE", "dhcp-match=set:ipxe,175"]
    for tag, values, _ in arches:
        dnsmasq += [f"dhcp-match=set:{tag},option:client-arch,{v}" for v in values]
    if url:
        dnsmasq.append(f"dhcp-boot=tag:ipxe,{url}")
    notipxe = "tag:!ipxe," if url else ""
    dnsmasq += [f"dhcp-boot={notipxe}tag:{tag},{file},,{ip}" for tag, _, file in arches]

    kea = ['// kea-dhcp4.conf, in "Dhcp4"', '"client-classes": [']
    classes = []
    if url:
        classes.append(f'  {{ "name": "pxe-ipxe", "test": "substring(option[77].hex,0,4) == '
                       f"'iPXE' or option[175].exists\",\n"
                       f'    "next-server": "{ip}", "boot-file-name": "{url}" }}')
    for tag, values, file in arches:
        test = " or ".join(f"option[93].hex == 0x{v:04x}" for v in values)
        if url:
            test = f"({test}) and not member('pxe-ipxe')"
        classes.append(f'  {{ "name": "pxe-{tag}", "test": "{test}",\n'
                       f'    "next-server": "{ip}", "boot-file-name": "{file}" }}')
    kea += [",\n".join(classes), "]"]

    width = max(len(who) for who, _ in boot_paths(plan))
    generic = [f"next-server (siaddr, option 66): {ip}", "boot file (option 67):"]
    generic += [f"  {who:<{width}}  {path}" for who, path in boot_paths(plan)]
    return [("ISC dhcpd", "\n".join(isc)), ("dnsmasq", "\n".join(dnsmasq)),
            ("Kea", "\n".join(kea)), ("Any other DHCP server", "\n".join(generic))]

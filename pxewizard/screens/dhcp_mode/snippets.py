"""What an existing DHCP server needs so its clients boot from us (mode "none").

Text only: next-server (siaddr, option 66) and the boot file per client
architecture (option 93: 0 BIOS, 7 and 9 EFI x64), for ISC dhcpd, dnsmasq, Kea,
and in words for anything else.
"""

from __future__ import annotations


def snippets(server_ip: str, bios: str = "pxelinux.0",
             efi_x64: str = "syslinux.efi") -> list[tuple[str, str]]:
    """(title, configuration text) for each DHCP server we know."""
    isc = f"""\
# /etc/dhcp/dhcpd.conf, inside the subnet block
option arch code 93 = unsigned integer 16;
next-server {server_ip};
if option arch = 00:07 or option arch = 00:09 {{
  filename "{efi_x64}";
}} else {{
  filename "{bios}";
}}"""
    dnsmasq = f"""\
# /etc/dnsmasq.d/pxe.conf
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:efi64,{efi_x64},,{server_ip}
dhcp-boot=tag:!efi64,{bios},,{server_ip}"""
    kea = f"""\
// kea-dhcp4.conf, in "Dhcp4"
"client-classes": [
  {{ "name": "pxe-efi64",
    "test": "option[93].hex == 0x0007 or option[93].hex == 0x0009",
    "next-server": "{server_ip}", "boot-file-name": "{efi_x64}" }},
  {{ "name": "pxe-bios", "test": "option[93].hex == 0x0000",
    "next-server": "{server_ip}", "boot-file-name": "{bios}" }}
]"""
    generic = f"""\
next-server (siaddr, option 66): {server_ip}
boot file (option 67): {bios} for BIOS clients (arch 0),
                       {efi_x64} for UEFI x64 clients (arch 7 and 9)"""
    return [("ISC dhcpd", isc), ("dnsmasq", dnsmasq), ("Kea", kea),
            ("Any other DHCP server", generic)]

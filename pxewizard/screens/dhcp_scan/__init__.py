"""Wizard step: dhcp_scan."""

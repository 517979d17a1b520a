"""Wizard step: dhcp_mode."""

"""Wizard step: live."""

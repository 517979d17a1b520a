"""Wizard step: preflight."""

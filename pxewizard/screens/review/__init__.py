"""Wizard step: review."""

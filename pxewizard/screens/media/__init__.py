"""Wizard step: media."""

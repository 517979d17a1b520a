"""Wizard step: interface."""

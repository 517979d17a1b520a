"""Wizard step: transport."""

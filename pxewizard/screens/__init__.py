"""Textual screens of the wizard."""


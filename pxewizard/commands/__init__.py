"""Subcommands beside the wizard: ``doctor``/``replay``, ``export``, ``lab``."""

"""pxewizard: a PXE boot server for rescue systems, driven by a text-mode wizard."""

__version__ = "0.1.0"

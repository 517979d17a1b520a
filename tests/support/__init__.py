"""Helpers shared by the test tiers: namespaces, peer tools, running `pxewizard serve`."""

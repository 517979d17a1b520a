"""Thin asyncio adapters around the protocol cores: sockets, files, timers."""


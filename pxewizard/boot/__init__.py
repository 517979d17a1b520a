"""Boot media, boot loaders, menus and kernel command lines."""


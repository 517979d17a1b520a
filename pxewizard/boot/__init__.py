"""Boot media, boot loaders, menus and kernel command lines.

- :mod:`.media`: ``find_media(path | None) -> list[Media]`` (directory, mounted CD,
  unmounted .iso, or autodetected), ``Media``/``BootEntry`` (transport-agnostic entries).
- :mod:`.loaders`: ``find_loaders(search) -> Loaders``, ``missing_message(name)``.
- :mod:`.cmdline`: command lines per profile and transport (``kernel_cmdline``), and
  ``entries_for(media, plan)`` (entries with their final command line for the Plan).
- :mod:`.menus`: pxelinux (BIOS and UEFI) configs and the iPXE script from one entry list;
  ``RemoteEntry`` for kernels at http:// URLs.
- :mod:`.ram`: ``ram_estimate(media, entry, transport, copytoram) -> RamEstimate``.
- :mod:`.initramfs`: file list of an initramfs, NFS-root support check.
- :mod:`.tree`: ``build_boot(plan) -> BootTree`` (tree, media, entries, menus, warnings),
  ``build_tree(plan) -> FileTree``, ``nbd_exports(plan)``, ``nfs_exports(plan)``.
"""

"""Embedded NFSv3 server: portmapper (111), MOUNT v3 (mount_port) and NFS v3 (nfs_port).

``start_nfs`` binds every port on TCP and UDP, publishes a ServiceStarted for
each, and returns a Service whose ``close()`` stops them all (and removes our
registrations from a running rpcbind). Exports are read-only unless their
``rw`` option is set; see ``nfsd.py`` for the procedures, ``handles.py`` for
the file handles and the jail, ``auth.py`` for squashing.

Clients can skip the portmapper with :func:`nfs_mount_options` (kernel
``nfsroot=``, ``mount -o``); ``nolock`` is part of it because no lock manager
runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...errors import PortInUse, PxeError
from ...events import EventBus, LogLine, ServiceStarted, ServiceStopped
from ...proto import portmap as pm
from ...proto.mount3 import MOUNT_PROG, MOUNT_VERS
from ...proto.nfs3 import NFS_PROG, NFS_VERS, nfs_mount_options
from ..base import tcp_listener, udp_socket
from .handles import Export, Resolver
from .mountd import MountProgram
from .nfsd import NfsProgram
from .portmap import PortmapProgram, register, unregister
from .transport import MAX_CONNECTIONS, MAX_REPLY_BYTES, MAX_TOTAL_REPLY_BYTES, RpcEndpoint

__all__ = ["NfsService", "nfs_mount_options", "start_nfs"]


@dataclass
class NfsService:
    """The running NFS server (all its ports)."""

    name: str
    bus: EventBus
    endpoints: list[RpcEndpoint] = field(default_factory=list)
    nfsd: NfsProgram | None = None
    mountd: MountProgram | None = None
    registered: list[pm.Mapping] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    """Service name -> port actually bound (useful when a port 0 was asked for)."""
    _ticker: asyncio.Task | None = None

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(BaseException):
                await self._ticker
        for ep in self.endpoints:
            await ep.close()
        if self.registered:
            await asyncio.to_thread(unregister, self.registered)
            self.registered = []
        if self.nfsd is not None:
            self.nfsd.tick()
            self.nfsd.close()
        self.bus.publish(ServiceStopped(service="nfs"))


def _exports(exports: Sequence[object]) -> list[Export]:
    if not exports:
        raise PxeError("NFS is enabled but nothing is exported",
                       "add an [[nfs.exports]] entry with path = \"/some/dir\" to the plan")
    out = []
    for e in exports:
        try:
            out.append(Export.from_config(e))
        except FileNotFoundError:
            raise PxeError(f"NFS export {getattr(e, 'path', e)} does not exist",
                           "create the directory or fix nfs.exports in the plan") from None
        except NotADirectoryError:
            raise PxeError(f"NFS export {getattr(e, 'path', e)} is not a directory",
                           "export a directory (mount an ISO first, or use NBD for images)"
                           ) from None
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):
        raise PxeError("the same directory is exported twice", "list each directory once")
    return out


async def _bind(ep: RpcEndpoint, bus: EventBus, address: str, port: int,
                interface: str | None, udp_on: bool = True) -> int:
    tcp = tcp_listener(address, port, interface=interface)
    try:
        port = tcp.getsockname()[1]
        udp = udp_socket(address, port, interface=interface) if udp_on else None
    except BaseException:
        tcp.close()
        raise
    await ep.start(address, port, tcp, udp)
    for proto in ("tcp", "udp") if udp_on else ("tcp",):
        bus.publish(ServiceStarted(service=ep.service, address=address, port=port, proto=proto))
    return port


async def start_nfs(*, bus: EventBus, address: str, nfs_port: int = 2049,
                    mount_port: int = 20048, portmap: bool = True, exports: Sequence[object],
                    interface: str | None = None, udp: bool = False,
                    max_connections: int = MAX_CONNECTIONS,
                    max_reply_bytes: int = MAX_REPLY_BYTES,
                    max_total_reply_bytes: int = MAX_TOTAL_REPLY_BYTES) -> NfsService:
    """Start NFS v3, MOUNT v3 and (when port 111 is free and ``portmap``) the portmapper.

    NFS itself answers over UDP only when ``udp`` (off by default, as recent nfs-utils:
    a READ over UDP answers 32 KiB to a 100-byte datagram whose source nobody checks, a
    reflector); MOUNT and the portmapper keep UDP (small replies; kernel clients use it).

    ``exports``: objects with ``path``, ``rw``, ``squash`` (root_squash / all_squash /
    no_root_squash), ``anonuid``, ``anongid`` (pxewizard.plan.NfsExport).
    Raises PxeError (ports in use, missing export directory) after undoing what started.
    """
    exp = await asyncio.to_thread(_exports, exports)
    resolver = Resolver(exp)
    svc = NfsService(name="nfs", bus=bus)
    svc.nfsd = NfsProgram(exp, resolver, bus)
    svc.mountd = MountProgram(exp, resolver, bus)
    own = [address]
    try:
        caps = {"max_connections": max_connections, "max_reply_bytes": max_reply_bytes,
                "max_total_reply_bytes": max_total_reply_bytes}
        nfs_ep = RpcEndpoint("nfs", [svc.nfsd], bus, own, sessions=True, **caps)
        svc.endpoints.append(nfs_ep)
        nfs_port = await _bind(nfs_ep, bus, address, nfs_port, interface, udp_on=udp)
        mnt_ep = RpcEndpoint("mountd", [svc.mountd], bus, own, **caps)
        svc.endpoints.append(mnt_ep)
        mount_port = await _bind(mnt_ep, bus, address, mount_port, interface)
        svc.ports = {"nfs": nfs_port, "mountd": mount_port}
        mappings = [pm.Mapping(prog, vers, prot, port)
                    for prog, vers, port in ((NFS_PROG, NFS_VERS, nfs_port),
                                             (MOUNT_PROG, MOUNT_VERS, mount_port))
                    for prot in (pm.IPPROTO_TCP, pm.IPPROTO_UDP)
                    if udp or prog != NFS_PROG or prot == pm.IPPROTO_TCP]
        hint = ("clients must be given the ports: mount -o "
                + nfs_mount_options(address, nfs_port, mount_port))
        if portmap:
            pm_ep = RpcEndpoint("portmap", [PortmapProgram(pm.PortmapTable(mappings))], bus, own,
                                **caps)
            try:
                await _bind(pm_ep, bus, address, pm.PMAP_PORT, interface)
                svc.endpoints.append(pm_ep)
                svc.ports["portmap"] = pm.PMAP_PORT
            except PortInUse as exc:
                await pm_ep.close()
                problems = await asyncio.to_thread(register, mappings)
                held = f"held by {exc.holder}" if exc.holder else "in use"
                if problems:
                    bus.publish(LogLine(
                        service="portmap", level="warning",
                        message=f"port 111 is {held} and registering with it failed ("
                                + "; ".join(problems) + f"); {hint}"))
                else:
                    svc.registered = mappings
                    bus.publish(LogLine(service="portmap", level="info",
                                        message="registered NFS and MOUNT with the running "
                                                f"rpcbind ({exc.holder or 'port 111'})"))
        else:
            bus.publish(LogLine(service="portmap", level="info",
                                message=f"portmapper disabled in the plan; {hint}"))
    except BaseException:
        await svc.close()
        raise
    bus.publish(LogLine(service="nfs", level="info",
                        message="exports: " + ", ".join(
                            f"{e.path} ({'rw' if e.rw else 'ro'}, {e.squash})" for e in exp)
                        + "; kernel/mount options: "
                        + nfs_mount_options(address, nfs_port, mount_port)))

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while True:
            await asyncio.sleep(0.5)
            assert svc.nfsd is not None
            svc.nfsd.tick()
            n += 1
            for ep in svc.endpoints:
                ep.refresh()  # reply-byte budgets: let waiting calls go, drop non-readers
            if n % 60 == 0:  # every 30 s: close idle connections
                for ep in svc.endpoints:
                    ep.reap(loop.time())

    svc._ticker = asyncio.create_task(ticker())
    return svc

"""Step 6: how the kernel reaches its root image, and the client RAM each way needs."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Checkbox, Input, RadioSet, Static

from ...boot.media import BootEntry
from ...boot.ram import RamEstimate
from ...errors import PlanError
from ...plan import Transport
from ...units import size_text
from ..base import WizardScreen
from ..console import ConsoleCheckbox, ConsoleRadioButton
from ..widgets import ChoiceSet, FieldRow

MEANING = {
    Transport.http: "HTTP: the image is downloaded into client RAM; fast, any network",
    Transport.tftp: "TFTP: downloaded into client RAM like HTTP, slower; when HTTP is blocked",
    Transport.nfs: "NFSv3: read on demand from this server (or copied to RAM)",
    Transport.nbd: "NBD: the image as a network block device, read on demand (or copied)",
}


ROOT_MODES = {
    "shared-rw": "shared: every client writes the one tree (one client at a time)",
    "ro-overlay": "read-only tree, each client's changes in its RAM (lost at reboot)",
    "per-client": "a writable copy per MAC under the state directory",
}
"""nfs.root_mode, offered when the medium is an NFS root tree (issue 23)."""


def ram_words(est: RamEstimate, transport: Transport, copytoram: bool | None) -> str:
    """"Clients need about 2.1 GiB RAM with HTTP" (+ the dependency on this server)."""
    need = f"clients need about {size_text(est.needed_bytes)} RAM with {transport.value.upper()}"
    if transport in (Transport.nfs, Transport.nbd) and copytoram is False:
        need += " (no copy to RAM), but they depend on this server until they shut down"
    elif transport in (Transport.nfs, Transport.nbd) and copytoram:
        need += " (copied to RAM: the server can stop once they are up)"
    return need


class TransportScreen(WizardScreen):
    """HTTP / TFTP / NFS / NBD, copy-to-RAM for NFS/NBD, an external HTTP base URL."""

    STEP = "transport"

    def body(self) -> ComposeResult:
        d = self.draft
        with ChoiceSet(id="transport"):
            for t, text in MEANING.items():
                yield ConsoleRadioButton(text, value=t is d.transport, id=f"t-{t.value}")
        yield ConsoleCheckbox("copy the image to client RAM (NFS/NBD)", id="copytoram",
                       value=d.copytoram is not False, compact=True)
        with Vertical(id="roots"):  # shown for an NFS root tree only
            with ChoiceSet(id="root-mode"):
                for m, text in ROOT_MODES.items():
                    yield ConsoleRadioButton(text, value=m == (d.root_mode or "shared-rw"),
                                             id=f"r-{m}")
            yield Input(placeholder="per-client MACs: 52:54:00:12:34:56, ...",
                        id="nfs-clients", compact=True)
        yield FieldRow("external HTTP", Input(
            placeholder="none: our own HTTP server (http://host/path/)", id="external",
            compact=True))
        yield Static("", id="ram")

    def on_mount(self) -> None:
        self.query_one("#external", Input).value = self.draft.external_http
        self.query_one("#nfs-clients", Input).value = self.draft.nfs_clients
        self.query_one("#transport", RadioSet).focus()
        self.refresh_ram()

    def transport(self) -> Transport:
        b = self.query_one("#transport", RadioSet).pressed_button
        if b is None or b.id is None:
            return self.draft.transport
        return Transport(b.id.removeprefix("t-"))

    def copytoram(self) -> bool | None:
        t = self.transport()
        if t not in (Transport.nfs, Transport.nbd):
            return None
        return self.query_one("#copytoram", Checkbox).value

    @on(RadioSet.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self.refresh_ram()

    def entry(self) -> BootEntry | None:
        m = self.draft.media
        if m is None:
            return None
        ids = self.draft.entries
        pool = [e for e in m.entries if ids is None or e.id in ids]
        for e in pool:
            if e.id == self.draft.default:
                return e
        linux = [e for e in pool if e.image_size]
        return (linux or pool or [None])[0]

    def estimate(self, transport: Transport, copytoram: bool | None) -> RamEstimate | None:
        fn = self.wizard.config.ram_estimate
        m, e = self.draft.media, self.entry()
        if not callable(fn) or m is None or e is None:
            return None
        try:
            return fn(m, e, transport, copytoram)
        except Exception:  # an estimate is advice; never block the wizard on it
            return None

    def refresh_ram(self) -> None:
        t, c = self.transport(), self.copytoram()
        cb = self.query_one("#copytoram", Checkbox)
        cb.disabled = t not in (Transport.nfs, Transport.nbd)
        self.query_one("#roots").display = self.nfs_root_tree(t)
        out = Text()
        est = self.estimate(t, c)
        host = self.state.host
        if est is None:
            out.append("No RAM estimate: no boot medium chosen (or no estimator here).\n",
                       style="yellow")
        else:
            out.append(ram_words(est, t, c) + ".\n", style="bold")
            reasons = est.reasoning
            if isinstance(reasons, str):
                reasons = [reasons]
            for line in reasons or ():
                out.append(f"  {line}\n", style="dim")
            others = []
            for other in Transport:
                if other is t:
                    continue
                for copy in ((False, True) if other in (Transport.nfs, Transport.nbd)
                             else (None,)):
                    e2 = self.estimate(other, copy)
                    if e2 is not None:
                        tag = other.value.upper() + {None: "", True: "+copy",
                                                     False: ""}[copy]
                        others.append(f"{tag} {size_text(e2.needed_bytes)}")
            if others:
                out.append("Others: " + ", ".join(others) + "\n")
            fn = self.wizard.config.ram_estimate
            for m in self.draft.more_media if callable(fn) else ():
                # each further medium of the menu: its own entry, its own figure
                try:
                    e3 = fn(m, None, t, c)
                except Exception:  # an estimate is advice; never block the wizard on it
                    continue
                out.append(f"{m.label}: {size_text(e3.needed_bytes)}\n")
        if host is not None and t in (Transport.nfs, Transport.nbd) and c is False:
            out.append("This machine must keep serving until every client has shut down.\n",
                       style="yellow")
        self.query_one("#ram", Static).update(out)

    def nfs_root_tree(self, t: Transport) -> bool:
        return t is Transport.nfs and getattr(self.draft.media, "profile", "") == "nfsroot"

    def save(self) -> None:
        d = self.draft
        if self.nfs_root_tree(self.transport()):
            b = self.query_one("#root-mode", RadioSet).pressed_button
            d.root_mode = b.id.removeprefix("r-") if b is not None and b.id else d.root_mode
            d.nfs_clients = self.query_one("#nfs-clients", Input).value.strip()
        d.transport = self.transport()
        d.copytoram = self.copytoram()
        d.external_http = self.query_one("#external", Input).value.strip()

    def check(self) -> str | None:
        try:
            self.draft.to_plan()
        except PlanError as exc:
            return "\n".join(exc.problems)
        return None

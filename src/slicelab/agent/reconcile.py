"""Desired state document -> specs for the kernel layer, applied idempotently.

:func:`sliver_spec` and :func:`link_spec` map the document to
:class:`~slicelab.agent.spec.SliverSpec` / :class:`~slicelab.agent.spec.LinkSpec`.
:class:`Reconciler` diffs the document against what the runtime has (its slivers and the
link owners in its ledger), removes what is not wanted, ensures what is, honours
``run``, ``restart_seq``, ``expires`` and the boot state (see :data:`BOOT_PLANS`), runs
exec commands at most once, and returns the actual state document.

Nothing the reconciler needs lives only in memory: kernel objects are in the runtime's
ledger, restart sequence numbers and command results in ``progress.json``
(:class:`~slicelab.agent.state.AgentFiles`), images in complete directories renamed into
place, so a ``kill -9`` at any moment and a restart converge to the same state.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from slicelab.agent.images import ImageFetching, SliverImages
from slicelab.agent.spec import (
    InterfaceSpec,
    LinkSpec,
    LinkStatus,
    PortRange,
    SliverSpec,
    SliverState,
    SliverStatus,
)
from slicelab.agent.state import AgentFiles, Progress
from slicelab.domain.errors import InvalidInput, SlicelabError
from slicelab.images.archive import extract_archive

__all__ = [
    "BOOT_PLANS",
    "BootPlan",
    "ImageCache",
    "Reconciler",
    "Runtime",
    "link_spec",
    "sliver_spec",
]

log = logging.getLogger(__name__)


class OwnerView(Protocol):
    def owners(self) -> list[str]: ...


class Runtime(Protocol):
    """The part of :class:`slicelab.agent.runtime.node.NodeRuntime` the reconciler uses."""

    @property
    def ledger(self) -> OwnerView: ...

    def ensure_sliver(self, spec: SliverSpec) -> SliverStatus: ...
    def ensure_slivers(self, specs: Sequence[SliverSpec]) -> list[SliverStatus]: ...
    def remove_sliver(self, sliver_id: str) -> None: ...
    def remove_slivers(self, sliver_ids: Sequence[str]) -> None: ...
    def list_slivers(self) -> list[SliverStatus]: ...
    def stop(self, sliver_id: str, *, timeout: float | None = None) -> None: ...
    def restart(self, sliver_id: str) -> None: ...
    def exec(self, sliver_id: str, argv: Sequence[str], *,
             timeout: float = 30.0) -> tuple[int, str, str]: ...
    def ensure_link(self, spec: LinkSpec) -> LinkStatus: ...
    def remove_link(self, link_id: str) -> None: ...
    def remove_links(self, link_ids: Sequence[str]) -> None: ...
    def cleanup_all(self) -> None: ...


Existing = Literal["run", "stop", "remove"]


@dataclass(frozen=True)
class BootPlan:
    """What a boot state means for the node's slivers and links.

    ``existing``: ``run`` builds and runs the desired slivers (and removes the rest),
    ``stop`` stops every sliver but keeps it, ``remove`` removes every sliver and link.
    ``reports`` is the boot state the agent reports once the plan is carried out.
    """

    existing: Existing
    reports: str


BOOT_PLANS: dict[str, BootPlan] = {
    "new": BootPlan(existing="stop", reports="new"),
    "install": BootPlan(existing="stop", reports="install"),
    "boot": BootPlan(existing="run", reports="boot"),
    "reinstall": BootPlan(existing="remove", reports="install"),
    "debug": BootPlan(existing="stop", reports="debug"),
    "disabled": BootPlan(existing="stop", reports="disabled"),
}

_STATES = {SliverState.RUNNING: "ready", SliverState.STOPPED: "stopped",
           SliverState.BROKEN: "failed", SliverState.ABSENT: "configuring"}


def _files(sliver: dict[str, Any], node_urn: str) -> tuple[tuple[str, str], ...]:
    files = [("slice.urn", str(sliver.get("slice_urn", "")) + "\n"),
             ("node.urn", node_urn + "\n")]
    if sliver.get("manifest"):
        files.append(("manifest", str(sliver["manifest"])))
    return tuple(files)


def _interface(item: dict[str, Any]) -> InterfaceSpec:
    return InterfaceSpec(link_id=item["link_id"], ifname=item["ifname"], mac=item.get("mac"),
                         ipv4=item.get("ipv4"), capacity_mbps=item.get("capacity_mbps"))


def sliver_spec(sliver: dict[str, Any], *, image_dir: Path, node_urn: str) -> SliverSpec:
    """The runtime's spec for one sliver of the desired state document."""
    try:
        control = sliver["control"]
        return SliverSpec(
            sliver_id=sliver["sliver_id"], hostname=sliver["hostname"],
            cores=float(sliver["cores"]), memory_mib=int(sliver["memory_mib"]),
            pids_max=int(sliver.get("pids_max", 512)), image_dir=image_dir,
            ports=PortRange(int(control["first_port"]), int(control["count"])),
            files=_files(sliver, node_urn),
            ssh_authorized_keys=tuple(sliver.get("ssh_keys", ())),
            interfaces=tuple(_interface(i) for i in sliver.get("interfaces", ())))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"sliver document is malformed: {exc!r}", field="slivers") from exc


def link_spec(link: dict[str, Any], *, local_ip: str | None) -> LinkSpec:
    """The runtime's spec for one link of the desired state document."""
    try:
        return LinkSpec(link_id=link["link_id"], vni=int(link["vni"]),
                        capacity_mbps=link.get("capacity_mbps"),
                        members=tuple(link.get("local_slivers", ())),
                        remotes=tuple(link.get("remote_hosts", ())), local_ip=local_ip)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"link document is malformed: {exc!r}", field="links") from exc


def expired(sliver: dict[str, Any], *, now: float) -> bool:
    """Whether the sliver's lease has ended (``expires``: unix seconds or ISO 8601)."""
    value = sliver.get("expires")
    return value is not None and now >= _seconds(value)


class ImageCache:
    """Images as directories ``<root>/<name>``, fetched once as a tar and renamed in whole."""

    def __init__(self, root: Path, *, fetch: Callable[[str, IO[bytes]], None]) -> None:
        self.root = root
        self._fetch = fetch

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise InvalidInput(f"image name {name!r} is not usable", field="image")
        return self.root / name

    def plan(self, doc: dict[str, Any], *, now: float) -> None:
        """Nothing to plan: a tar image is fetched when a sliver needs it."""

    def ensure_for(self, sliver: dict[str, Any]) -> Path:
        return self.ensure(str(sliver["image"]))

    def ensure(self, name: str) -> Path:
        target = self.path(name)
        if target.is_dir():
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with tempfile.TemporaryFile(dir=self.root) as tar:
            self._fetch(name, tar)
            tar.seek(0)
            extract_archive(tar, partial, keep_owners=True)
        partial.rename(target)
        return target

    def close(self) -> None:
        """Nothing runs in the background."""


@dataclass
class _Outcome:
    slivers: dict[str, dict[str, Any]]
    links: dict[str, dict[str, Any]]


class Reconciler:
    """Applies desired state documents to a runtime; one caller at a time."""

    def __init__(self, runtime: Runtime, files: AgentFiles, images: ImageCache | SliverImages, *,
                 host_ip: str | None, inventory: Callable[[], dict[str, Any]]) -> None:
        self.runtime, self.files, self.images = runtime, files, images
        self.host_ip = host_ip
        self._inventory = inventory
        self.progress: Progress = files.progress()

    def apply(self, doc: dict[str, Any], *, now: float) -> dict[str, Any]:
        """Converge to ``doc``; return the actual state document."""
        plan = BOOT_PLANS.get(str(doc.get("boot_state")), BOOT_PLANS["debug"])
        outcome = _Outcome({}, {})
        if plan.existing == "remove":
            self._remove_all()
        elif plan.existing == "stop":
            self._stop_all()
        else:
            self._converge(doc, outcome, now=now)
        self._run_commands(doc, allowed=plan.existing == "run")
        return self._actual(doc, plan, outcome)

    # boot states other than boot -------------------------------------------------------
    def _remove_all(self) -> None:
        self.runtime.remove_slivers([s.sliver_id for s in self.runtime.list_slivers()])
        self.runtime.remove_links(self._present_links())
        self.progress.restart_seq.clear()
        self.files.save_progress(self.progress)

    def _stop_all(self) -> None:
        for status in self.runtime.list_slivers():
            if status.state is SliverState.RUNNING:
                self.runtime.stop(status.sliver_id)

    def _present_links(self) -> list[str]:
        return [o.split(":", 1)[1] for o in self.runtime.ledger.owners()
                if o.startswith("link:")]

    # boot ------------------------------------------------------------------------------
    def _converge(self, doc: dict[str, Any], outcome: _Outcome, *, now: float) -> None:
        slivers = {s["sliver_id"]: s for s in doc.get("slivers", [])}
        links = {link["link_id"]: link for link in doc.get("links", [])}
        unwanted = [s.sliver_id for s in self.runtime.list_slivers()
                    if s.sliver_id not in slivers]
        self.runtime.remove_slivers(unwanted)
        for sliver_id in unwanted:
            self.progress.restart_seq.pop(sliver_id, None)
        self.runtime.remove_links([k for k in self._present_links() if k not in links])
        for link in links.values():
            outcome.links[link["link_id"]] = self._link(link)
        node_urn = str(doc.get("node", {}).get("urn", ""))
        self.images.plan(doc, now=now)
        specs: dict[str, SliverSpec] = {}
        for sliver in slivers.values():
            found = self._spec(sliver, node_urn, now=now)
            if isinstance(found, SliverSpec):
                specs[sliver["sliver_id"]] = found
            else:
                outcome.slivers[sliver["sliver_id"]] = found
        for sliver_id, result in self._ensure(list(specs.values())).items():
            outcome.slivers[sliver_id] = self._finish(slivers[sliver_id], result)
        self.files.save_progress(self.progress)

    def _link(self, link: dict[str, Any]) -> dict[str, Any]:
        try:
            status = self.runtime.ensure_link(link_spec(link, local_ip=self.host_ip))
        except (SlicelabError, OSError) as exc:
            log.warning("link %s failed: %s", link.get("link_id"), exc)
            return {"state": "failed", "error": str(exc)}
        return {"state": "ready" if status.present else "failed", "error": None}

    def _spec(self, sliver: dict[str, Any], node_urn: str, *,
              now: float) -> SliverSpec | dict[str, Any]:
        """The sliver's spec, or its outcome when it is not to be built now."""
        sliver_id = sliver["sliver_id"]
        try:
            if expired(sliver, now=now):
                return self._stopped_if_present(sliver_id, reason="lease ended")
            return sliver_spec(sliver, image_dir=self.images.ensure_for(sliver),
                               node_urn=node_urn)
        except ImageFetching as waiting:
            return {"state": "fetching", "error": None, "progress": str(waiting),
                    "status": None}
        except (SlicelabError, OSError) as exc:
            log.warning("sliver %s failed: %s", sliver_id, exc)
            return {"state": "failed", "error": str(exc), "status": None}

    def _ensure(self, specs: list[SliverSpec]) -> dict[str, SliverStatus | Exception]:
        """Every spec built in one bulk call; if that fails, each on its own, so that one
        failing sliver does not fail the others."""
        if not specs:
            return {}
        try:
            statuses = self.runtime.ensure_slivers(specs)
            return {s.sliver_id: status for s, status in zip(specs, statuses, strict=True)}
        except (SlicelabError, OSError) as exc:
            log.warning("building %d slivers together failed (%s); one at a time", len(specs),
                        exc)
        results: dict[str, SliverStatus | Exception] = {}
        for spec in specs:
            try:
                results[spec.sliver_id] = self.runtime.ensure_sliver(spec)
            except (SlicelabError, OSError) as exc:
                results[spec.sliver_id] = exc
        return results

    def _finish(self, sliver: dict[str, Any],
                result: SliverStatus | Exception) -> dict[str, Any]:
        """The outcome of a built sliver, after its run state is applied."""
        try:
            if isinstance(result, Exception):
                raise result
            status = self._run_state(sliver, result)
        except (SlicelabError, OSError) as exc:
            log.warning("sliver %s failed: %s", sliver["sliver_id"], exc)
            return {"state": "failed", "error": str(exc), "status": None}
        return {"state": _STATES[status.state], "error": None, "status": status}

    def _run_state(self, sliver: dict[str, Any], status: SliverStatus) -> SliverStatus:
        sliver_id, wanted = sliver["sliver_id"], int(sliver.get("restart_seq", 0))
        if sliver.get("run", "started") == "stopped":
            if status.state is SliverState.RUNNING:
                self.runtime.stop(sliver_id)
        elif self.progress.restart_seq.setdefault(sliver_id, wanted) < wanted:
            self.runtime.restart(sliver_id)
            self.progress.restart_seq[sliver_id] = wanted
            self.files.save_progress(self.progress)
        return self._status(sliver_id) or status

    def _stopped_if_present(self, sliver_id: str, *, reason: str) -> dict[str, Any]:
        status = self._status(sliver_id)
        if status is not None and status.state is SliverState.RUNNING:
            self.runtime.stop(sliver_id)
            status = self._status(sliver_id)
        return {"state": "stopped", "error": reason, "status": status}

    def _status(self, sliver_id: str) -> SliverStatus | None:
        for status in self.runtime.list_slivers():
            if status.sliver_id == sliver_id:
                return status
        return None

    # commands --------------------------------------------------------------------------
    def _run_commands(self, doc: dict[str, Any], *, allowed: bool) -> None:
        commands = {c["id"]: c for c in doc.get("commands", []) if c.get("type") == "exec"}
        done = self.progress.commands
        for command_id in [c for c in done if c not in commands]:
            del done[command_id]
        self.progress.posted = [c for c in self.progress.posted if c in commands]
        for command_id, result in list(done.items()):
            if result is None:
                done[command_id] = _result(-1, "", "the agent restarted while the command ran")
        for command_id, command in commands.items():
            if command_id not in done:
                done[command_id] = self._exec(command, allowed=allowed)
        self.files.save_progress(self.progress)

    def _exec(self, command: dict[str, Any], *, allowed: bool) -> dict[str, Any]:
        if not allowed:
            return _result(-1, "", "the node is not in boot state")
        self.progress.commands[command["id"]] = None
        self.files.save_progress(self.progress)
        try:
            code, out, err = self.runtime.exec(str(command["sliver_id"]),
                                               [str(a) for a in command["argv"]],
                                               timeout=float(command.get("timeout", 30)))
        except (SlicelabError, OSError, KeyError) as exc:
            return _result(-1, "", str(exc))
        return _result(code, out, err)

    def pending_results(self) -> dict[str, dict[str, Any]]:
        """Results of commands not yet acknowledged by the server."""
        return {k: v for k, v in self.progress.commands.items()
                if v is not None and k not in self.progress.posted}

    def mark_posted(self, command_id: str) -> None:
        if command_id not in self.progress.posted:
            self.progress.posted.append(command_id)
            self.files.save_progress(self.progress)

    # the actual state document ---------------------------------------------------------
    def _actual(self, doc: dict[str, Any], plan: BootPlan, outcome: _Outcome) -> dict[str, Any]:
        slivers = []
        for status in self.runtime.list_slivers():
            slivers.append(self._sliver_report(status, outcome.slivers.pop(status.sliver_id,
                                                                           None)))
        for sliver_id, item in outcome.slivers.items():
            slivers.append({"sliver_id": sliver_id, "state": item["state"],
                            "error": item["error"], "control_ip": None, "ssh": None,
                            "progress": item.get("progress")})
        links = [{"link_id": k, **v} for k, v in outcome.links.items()]
        return {"generation_applied": doc.get("generation"), "boot_state": plan.reports,
                "inventory": self._inventory(), "slivers": slivers, "links": links}

    def _sliver_report(self, status: SliverStatus,
                       item: dict[str, Any] | None) -> dict[str, Any]:
        ssh = ({"host": self.host_ip, "port": status.ssh_port}
               if status.ssh_port is not None else None)
        state = item["state"] if item else _STATES[status.state]
        return {"sliver_id": status.sliver_id, "state": state,
                "error": item["error"] if item else None, "control_ip": status.control_ip,
                "ssh": ssh, "progress": None}

    def next_expiry(self, doc: dict[str, Any], *, now: float) -> float | None:
        """Seconds until the next lease of a running sliver ends, if any."""
        waits = []
        for sliver in doc.get("slivers", []):
            if sliver.get("expires") is not None and not expired(sliver, now=now):
                waits.append(_seconds(sliver["expires"]) - now)
        return min(waits) if waits else None


def _seconds(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _result(code: int, out: str, err: str) -> dict[str, Any]:
    return {"exit_code": code, "stdout": out, "stderr": err}

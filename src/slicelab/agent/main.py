"""The node agent process: enroll once, then converge to the desired state forever.

Two threads: the :class:`~slicelab.agent.channel.Poller` long-polls for desired state and
caches each new document on disk; the main thread applies the cached document (on every
change, every ``report_interval`` seconds, and when a lease ends), reports the actual
state, posts command results and keeps the metadata endpoint current. SIGTERM or SIGINT
ends the process after the current step; slivers keep running (``cleanup`` removes them).
:class:`StopSignals` handles both so that the helpers pyroute2 forks to enter a namespace
still die of them (a handler they inherited used to keep them alive, and netlink calls hung).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from slicelab.agent import inventory
from slicelab.agent.channel import Backoff, Channel, Poller
from slicelab.agent.config import AgentConfig
from slicelab.agent.images import agent_images
from slicelab.agent.metadata import MetadataServer, metadata_index
from slicelab.agent.reconcile import Reconciler, Runtime
from slicelab.agent.state import AgentFiles, NodeIdentity
from slicelab.domain.errors import AuthenticationFailed, SlicelabError, Unavailable

__all__ = ["Agent", "StopSignals", "cleanup", "default_signals_in_children", "enroll",
           "make_runtime", "run_agent"]

log = logging.getLogger("slicelab.agent")
_RETRY = 5.0


def enroll(channel: Channel, files: AgentFiles, *, token: str | None, hostname: str,
           inventory_doc: dict[str, Any], stop: threading.Event,
           backoff: Backoff | None = None) -> NodeIdentity:
    """The saved identity, or enroll with ``token`` (retrying while the server is down)."""
    identity = files.identity()
    if identity is not None:
        channel.identity = identity
        return identity
    if not token:
        raise AuthenticationFailed("this node is not enrolled; give an enrollment token")
    delays = backoff or Backoff()
    while True:
        try:
            identity = channel.enroll(token, hostname=hostname, inventory=inventory_doc)
        except Unavailable as exc:
            log.warning("enrollment: %s", exc)
            if stop.wait(delays.next()):
                raise
            continue
        files.save_identity(identity)
        log.info("enrolled as %s (%s)", identity.node_name, identity.node_id)
        return identity


class Agent:
    """The main loop: apply, report, post results, sleep until woken or due."""

    def __init__(self, config: AgentConfig, *, runtime: Runtime, channel: Channel,
                 files: AgentFiles, host_ip: str | None,
                 clock: Callable[[], float] = time.time,
                 metadata: MetadataServer | None = None,
                 inventory_doc: dict[str, Any] | None = None,
                 stop: threading.Event | None = None,
                 wake: threading.Event | None = None) -> None:
        self.config, self.runtime, self.channel, self.files = config, runtime, channel, files
        self.clock = clock
        self.metadata = metadata
        self.stop = stop or threading.Event()
        self.wake = wake or threading.Event()
        self._inventory_doc = inventory_doc or inventory.collect(config)
        images = agent_images(config, files, channel, wake=self.wake.set)
        self.reconciler = Reconciler(runtime, files, images, host_ip=host_ip,
                                     inventory=lambda: self._inventory_doc)
        self.poller = Poller(channel, files, on_change=self._changed, wait=config.poll_wait,
                             stop=self.stop)

    def _changed(self, doc: dict[str, Any]) -> None:
        log.info("desired generation %s received at %.6f", doc.get("generation"), self.clock())
        self.wake.set()

    def step(self) -> float:
        """Apply the cached desired state once; return seconds until the next step."""
        doc = self.files.desired()
        now = self.clock()
        if doc is None:
            actual: dict[str, Any] = {"generation_applied": None, "boot_state": "new",
                                      "inventory": self._inventory_doc, "slivers": [],
                                      "links": []}
        else:
            actual = self.reconciler.apply(doc, now=now)
            self._update_metadata(doc, actual)
        delay = float(self.config.report_interval)
        if not self._send(actual):
            delay = _RETRY
        expiry = self.reconciler.next_expiry(doc, now=now) if doc else None
        return min(delay, expiry) if expiry is not None else delay

    def _send(self, actual: dict[str, Any]) -> bool:
        try:
            self.channel.report(actual)
            for command_id, result in self.reconciler.pending_results().items():
                self.channel.post_result(command_id, result)
                self.reconciler.mark_posted(command_id)
        except SlicelabError as exc:
            log.warning("report: %s", exc)
            return False
        return True

    def _update_metadata(self, doc: dict[str, Any], actual: dict[str, Any]) -> None:
        if self.metadata is not None:
            addresses = {s["sliver_id"]: s["control_ip"] for s in actual["slivers"]
                         if s.get("control_ip")}
            self.metadata.update(metadata_index(doc, addresses))

    def run(self) -> None:
        """Poll in the background and step until stopped."""
        self.poller.start()
        if self.metadata is not None:
            self.metadata.start()
        while not self.stop.is_set():
            self.wake.clear()
            try:
                delay = self.step()
            except Exception:  # the process edge: log, keep the node converging
                log.exception("reconcile step failed")
                delay = _RETRY
            self.wake.wait(max(delay, 0.0))

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()


def make_runtime(config: AgentConfig, *, host_ip: str) -> Runtime:
    """The real kernel layer for ``config`` (root only)."""
    from slicelab.agent.runtime.node import NodeRuntime

    return NodeRuntime(state_dir=config.state_dir, prefix=config.prefix,
                       control_subnet=config.control_subnet, host_ip=host_ip,
                       metadata_port=config.metadata_port or None)


def _metadata(config: AgentConfig) -> MetadataServer | None:
    if not config.metadata_port:
        return None
    import ipaddress

    gateway = next(ipaddress.IPv4Network(config.control_subnet).hosts())
    return MetadataServer(address=str(gateway), port=config.metadata_port)


_DEFAULTED = (signal.SIGTERM, signal.SIGINT)
_fork_hook: list[bool] = []  # one entry once the fork hook is registered


def _defaults_in_child() -> None:
    for signum in _DEFAULTED:
        signal.signal(signum, signal.SIG_DFL)


def default_signals_in_children() -> None:
    """Make every process forked from this one (pyroute2 forks a helper to enter a network
    namespace) start with SIGTERM and SIGINT at their defaults, so it dies of them instead of
    running this process's handlers (which would keep it alive, or deadlock it on a lock
    another thread held at the fork). Idempotent."""
    if not _fork_hook:
        os.register_at_fork(after_in_child=_defaults_in_child)
        _fork_hook.append(True)


class StopSignals:
    """SIGTERM and SIGINT call ``on_signal(signum)``, in the installing process only.

    The handler takes no lock and logs nothing (it may interrupt the main thread anywhere,
    even inside ``Event.set``): it writes the signal number to a pipe, and a watcher thread
    calls ``on_signal``. A forked child that still runs the handler (before the fork hook of
    :func:`default_signals_in_children` ran) restores the default and dies of the signal.
    """

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self.on_signal = on_signal
        self._owner = os.getpid()
        self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(self._read, True)
        self._previous: dict[int, Any] = {}
        self._thread = threading.Thread(target=self._watch, name="slicelab-signals",
                                        daemon=True)

    def install(self) -> StopSignals:
        default_signals_in_children()
        self._thread.start()
        for signum in _DEFAULTED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Restore the previous handlers and end the watcher (tests)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        os.close(self._write)
        self._thread.join(timeout=5)
        os.close(self._read)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, bytes([signum]))

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                self.on_signal(signum)


def _stopper(stop: threading.Event, wake: threading.Event) -> Callable[[int], None]:
    def on_signal(signum: int) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        wake.set()

    return on_signal


def run_agent(config: AgentConfig, *, enroll_token: str | None = None) -> None:
    """Enroll if there is no node key, then run until SIGTERM."""
    files = AgentFiles(config.state_dir)
    host = inventory.host_ip(config.server, given=config.host_ip,
                             known=inventory.interfaces()) or "127.0.0.1"
    config = replace(config, host_ip=host)
    channel = Channel(config.server)
    stop, wake = threading.Event(), threading.Event()
    StopSignals(_stopper(stop, wake)).install()
    found = inventory.collect(config)
    enroll(channel, files, token=enroll_token, hostname=config.name or socket.gethostname(),
           inventory_doc=found, stop=stop)
    runtime = make_runtime(config, host_ip=host)
    metadata = _metadata(config)
    agent = Agent(config, runtime=runtime, channel=channel, files=files, host_ip=host,
                  metadata=metadata, inventory_doc=found, stop=stop, wake=wake)
    log.info("agent running: server %s, state %s, host %s", config.server,
             config.state_dir, host)
    try:
        agent.run()
    finally:
        agent.reconciler.images.close()
        if metadata is not None:
            metadata.close()
        channel.close()
        getattr(runtime, "close", lambda: None)()


def cleanup(state_dir: Path, *, prefix: str = "sl", control_subnet: str = "10.200.0.0/24",
            runtime: Runtime | None = None) -> None:
    """Remove every kernel object the agent at ``state_dir`` ever made (from its ledger)."""
    if runtime is None:
        from slicelab.agent.runtime.node import NodeRuntime

        runtime = NodeRuntime(state_dir=state_dir, prefix=prefix,
                              control_subnet=control_subnet, host_ip="127.0.0.1")
    runtime.cleanup_all()
    getattr(runtime, "close", lambda: None)()

"""NAT for the control network with nftables: one table per agent, rules by handle.

Commands are JSON, run by libnftables in this process (through ctypes: no process per
call) or, where the library is missing, by ``nft -j -e -a -f -`` on stdin. Many commands go
in one call, which nftables applies as one transaction. Each rule carries a comment
naming its ledger record, so that a rule made just before a crash (whose handle was never
written down) can still be found and removed by that id.

Port forwarding of a sliver with ports ``[F, F+n)``: ``host_ip:F`` (TCP) goes to the
sliver's port 22; ``host_ip:F+i`` for ``i >= 1`` (TCP and UDP) goes to the same port
number ``F+i`` inside the sliver.

The metadata endpoint: ``169.254.169.254:80`` from the control bridge goes to the
metadata server on the control gateway (:func:`metadata_rule`).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from slicelab.agent.runtime.errors import KernelError, MissingPackage

__all__ = ["METADATA_ADDRESS", "Nft", "dnat_rules", "masquerade_rule", "metadata_rule",
           "table_commands"]

_CHAINS = (("prerouting", "prerouting", -100), ("output", "output", -100),
           ("postrouting", "postrouting", 100))

Json = dict[str, Any]
METADATA_ADDRESS = "169.254.169.254"
_NOT_FOUND = "No such file or directory"
# libnftables output flags: handles, echo, JSON
_OUTPUT_FLAGS = (1 << 3) | (1 << 5) | (1 << 4)


class _Library:
    """libnftables through ctypes: one context, JSON in and out, errors as text."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        for name in ("nft_ctx_output_set_flags", "nft_ctx_buffer_output",
                     "nft_ctx_buffer_error", "nft_ctx_get_output_buffer",
                     "nft_ctx_get_error_buffer", "nft_ctx_free"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, *(
                [ctypes.c_uint] if name == "nft_ctx_output_set_flags" else [])]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib, self._lock = lib, threading.Lock()
        self._ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_output_set_flags(self._ctx, _OUTPUT_FLAGS)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, payload: str) -> tuple[int, str, str]:
        with self._lock:
            code = self._lib.nft_run_cmd_from_buffer(self._ctx, payload.encode())
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return code, out.decode(), err.decode()

    @staticmethod
    def load() -> _Library | None:
        try:
            return _Library(ctypes.CDLL("libnftables.so.1", use_errno=True))
        except OSError:
            return None


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": name}}


def table_commands(table: str) -> list[Json]:
    """The agent's table and its three NAT chains."""
    commands: list[Json] = [{"add": {"table": {"family": "ip", "name": table}}}]
    for name, hook, prio in _CHAINS:
        chain = {"family": "ip", "table": table, "name": name, "type": "nat", "hook": hook,
                 "prio": prio, "policy": "accept"}
        commands.append({"add": {"chain": chain}})
    return commands


def masquerade_rule(table: str, *, subnet: str, bridge: str, comment: str) -> Json:
    addr, length = subnet.split("/")
    expr = [_match(_payload("ip", "saddr"), {"prefix": {"addr": addr, "len": int(length)}}),
            _match({"meta": {"key": "oifname"}}, bridge, "!="), {"masquerade": None}]
    return {"family": "ip", "table": table, "chain": "postrouting", "expr": expr,
            "comment": comment}


def metadata_rule(table: str, *, bridge: str, gateway: str, port: int, comment: str) -> Json:
    """DNAT of ``169.254.169.254:80`` arriving on ``bridge`` to ``gateway:port``."""
    expr = [_match({"meta": {"key": "iifname"}}, bridge),
            _match(_payload("ip", "daddr"), METADATA_ADDRESS),
            _match(_payload("tcp", "dport"), 80),
            {"dnat": {"addr": gateway, "port": port}}]
    return {"family": "ip", "table": table, "chain": "prerouting", "expr": expr,
            "comment": comment}


def dnat_rules(table: str, *, chain: str, host_ip: str, target: str, first_port: int,
               count: int, comment: str) -> list[Json]:
    """DNAT of ``host_ip:[first_port, first_port+count)`` to ``target`` (see module doc)."""
    base = {"family": "ip", "table": table, "chain": chain, "comment": comment}
    daddr = _match(_payload("ip", "daddr"), host_ip)
    ssh = [daddr, _match(_payload("tcp", "dport"), first_port),
           {"dnat": {"addr": target, "port": 22}}]
    rules = [{**base, "expr": ssh}]
    if count > 1:
        rest = [daddr, _match({"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]}),
                _match(_payload("th", "dport"), {"range": [first_port + 1,
                                                            first_port + count - 1]}),
                {"dnat": {"addr": target}}]
        rules.append({**base, "expr": rest})
    return rules


class Nft:
    """Runs nftables commands as JSON (libnftables, else the nft binary); returns the echo."""

    def __init__(self, *, binary: str = "nft", library: bool = True) -> None:
        self._binary = binary
        self._library = _Library.load() if library else None

    def run(self, commands: Sequence[Json]) -> list[Json]:
        payload = json.dumps({"nftables": list(commands)})
        code, out, err = (self._library.run(payload) if self._library is not None
                          else self._run_binary(payload))
        if code != 0:
            raise KernelError(f"nft failed: {err.strip()}")
        return _documents(out)

    def _run_binary(self, payload: str) -> tuple[int, str, str]:
        try:
            done = subprocess.run([self._binary, "-j", "-e", "-a", "-f", "-"], input=payload,
                                  capture_output=True, text=True, check=False, timeout=30)
        except FileNotFoundError as exc:
            raise MissingPackage("nftables", needed_for="NAT of the control network") from exc
        return done.returncode, done.stdout, done.stderr

    def add_table(self, table: str) -> int:
        """Make the table and chains (or keep them if they exist); the table's handle."""
        for item in self.run(table_commands(table)):
            if "handle" in item.get("add", {}).get("table", {}):
                return int(item["add"]["table"]["handle"])
        handle = self.table_handle(table)  # it existed already: nothing new to echo
        if handle is None:
            raise KernelError(f"nft did not make table {table}")
        return handle

    def add_rule(self, rule: Json) -> int:
        return self.add_rules([rule])[0]

    def add_rules(self, rules: Sequence[Json]) -> list[int]:
        """Add ``rules`` in one transaction; their handles, in order."""
        if not rules:
            return []
        handles = [int(item["add"]["rule"]["handle"])
                   for item in self.run([{"add": {"rule": rule}} for rule in rules])
                   if "handle" in item.get("add", {}).get("rule", {})]
        if len(handles) != len(rules):
            raise KernelError("nft did not echo every rule's handle")
        return handles

    def list_table(self, table: str) -> list[Json] | None:
        """The table's items (table, chains, rules with handles), None if it does not exist."""
        try:
            return self.run([{"list": {"table": {"family": "ip", "name": table}}}])
        except KernelError:
            return None

    def table_handle(self, table: str) -> int | None:
        for item in self.list_table(table) or []:
            if "table" in item:
                return int(item["table"]["handle"])
        return None

    def rule_handles(self, table: str, comment: str) -> list[tuple[str, int]]:
        """(chain, handle) of every rule in ``table`` whose comment is exactly ``comment``."""
        return [(i["rule"]["chain"], int(i["rule"]["handle"]))
                for i in self.list_table(table) or []
                if "rule" in i and i["rule"].get("comment") == comment]

    def rules_with_comments(self, table: str, comments: set[str]) -> list[tuple[str, int]]:
        """(chain, handle) of every rule in ``table`` whose comment is one of ``comments``
        (one listing of the table for all of them)."""
        return [(i["rule"]["chain"], int(i["rule"]["handle"]))
                for i in self.list_table(table) or []
                if "rule" in i and i["rule"].get("comment") in comments]

    def delete_rule(self, table: str, chain: str, handle: int) -> None:
        """Delete one rule by handle; already gone (or its table gone) is fine."""
        self.delete_rules(table, [(chain, handle)])

    def delete_rules(self, table: str, rules: Sequence[tuple[str, int]]) -> None:
        """Delete ``(chain, handle)`` rules in one transaction; those gone are skipped.

        If the transaction fails because a rule is gone, each is deleted on its own.
        """
        commands = [_delete(table, chain, handle) for chain, handle in rules]
        if not commands:
            return
        try:
            self.run(commands)
        except KernelError as exc:
            if _NOT_FOUND not in str(exc):
                raise
            if len(commands) > 1:
                for chain, handle in rules:
                    self.delete_rules(table, [(chain, handle)])

    def delete_table(self, table: str, handle: int | None) -> None:
        current = self.table_handle(table)
        if current is not None and (handle is None or current == handle):
            self.run([{"delete": {"table": {"family": "ip", "name": table, "handle": current}}}])


def _delete(table: str, chain: str, handle: int) -> Json:
    return {"delete": {"rule": {"family": "ip", "table": table, "chain": chain,
                                "handle": handle}}}


def _documents(out: str) -> list[Json]:
    """The items of every JSON document in ``out`` (nft may print several)."""
    decoder, items, at = json.JSONDecoder(), [], 0
    while (at := len(out) - len(out[at:].lstrip())) < len(out):
        document, at = decoder.raw_decode(out, at)
        items += document.get("nftables", [])
    return items

"""NAT for the control network with nftables: one table per agent, rules by handle.

Commands go to ``nft -j -e -a -f -`` as JSON on stdin (no strings are parsed by a shell).
Each rule carries a comment naming its ledger record, so that a rule made just before a
crash (whose handle was never written down) can still be found and removed by that id.

Port forwarding of a sliver with ports ``[F, F+n)``: ``host_ip:F`` (TCP) goes to the
sliver's port 22; ``host_ip:F+i`` for ``i >= 1`` (TCP and UDP) goes to the same port
number ``F+i`` inside the sliver.

The metadata endpoint: ``169.254.169.254:80`` from the control bridge goes to the
metadata server on the control gateway (:func:`metadata_rule`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from slicelab.agent.runtime.errors import KernelError, MissingPackage

__all__ = ["METADATA_ADDRESS", "Nft", "dnat_rules", "masquerade_rule", "metadata_rule",
           "table_commands"]

_CHAINS = (("prerouting", "prerouting", -100), ("output", "output", -100),
           ("postrouting", "postrouting", 100))

Json = dict[str, Any]
METADATA_ADDRESS = "169.254.169.254"


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
    """Runs nft with JSON; returns what it echoes."""

    def __init__(self, *, binary: str = "nft") -> None:
        self._binary = binary

    def run(self, commands: Sequence[Json]) -> list[Json]:
        payload = json.dumps({"nftables": list(commands)})
        try:
            done = subprocess.run([self._binary, "-j", "-e", "-a", "-f", "-"], input=payload,
                                  capture_output=True, text=True, check=False, timeout=30)
        except FileNotFoundError as exc:
            raise MissingPackage("nftables", needed_for="NAT of the control network") from exc
        if done.returncode != 0:
            raise KernelError(f"nft failed: {done.stderr.strip()}")
        return list(json.loads(done.stdout or '{"nftables": []}')["nftables"])

    def add_table(self, table: str) -> int:
        """Make the table and chains; the table's handle."""
        for item in self.run(table_commands(table)):
            if "table" in item.get("add", {}):
                return int(item["add"]["table"]["handle"])
        raise KernelError(f"nft did not echo table {table}")

    def add_rule(self, rule: Json) -> int:
        for item in self.run([{"add": {"rule": rule}}]):
            if "rule" in item.get("add", {}):
                return int(item["add"]["rule"]["handle"])
        raise KernelError("nft did not echo the rule's handle")

    def list_table(self, table: str) -> list[Json] | None:
        done = subprocess.run([self._binary, "-j", "-a", "list", "table", "ip", table],
                              capture_output=True, text=True, check=False, timeout=30)
        if done.returncode != 0:
            return None
        return list(json.loads(done.stdout)["nftables"])

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

    def delete_rule(self, table: str, chain: str, handle: int) -> None:
        if any(h == handle and c == chain for c, h in self._all_rules(table)):
            self.run([{"delete": {"rule": {"family": "ip", "table": table, "chain": chain,
                                           "handle": handle}}}])

    def _all_rules(self, table: str) -> list[tuple[str, int]]:
        return [(i["rule"]["chain"], int(i["rule"]["handle"]))
                for i in self.list_table(table) or [] if "rule" in i]

    def delete_table(self, table: str, handle: int | None) -> None:
        current = self.table_handle(table)
        if current is not None and (handle is None or current == handle):
            self.run([{"delete": {"table": {"family": "ip", "name": table, "handle": current}}}])

"""Name rules for the things people name: members, projects, slices, sites, nodes.

Slice and project names become DNS labels inside a sliver (``<node>.<slice>.<project>.<domain>``),
so they are lowercase letters, digits and hyphens, start with a letter and do not end with a
hyphen. A slice name is at most 19 characters, as in GENI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidName

__all__ = [
    "MEMBER_NAME",
    "NODE_NAME",
    "PROJECT_NAME",
    "SITE_NAME",
    "SLICE_NAME",
    "NameRule",
    "check_name",
    "split_slice_ref",
]


@dataclass(frozen=True, slots=True)
class NameRule:
    kind: str
    max_length: int
    pattern: re.Pattern[str]
    describe: str


def _rule(kind: str, max_length: int, body: str, describe: str) -> NameRule:
    return NameRule(kind, max_length, re.compile(body), describe)


_DNS = r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$"
SLICE_NAME = _rule("slice", 19, _DNS, "lowercase letters, digits and '-', starting with a letter, "
                   "not ending with '-'")
PROJECT_NAME = _rule("project", 32, _DNS, SLICE_NAME.describe)
SITE_NAME = _rule("site", 32, _DNS, SLICE_NAME.describe)
NODE_NAME = _rule("node", 63, _DNS, SLICE_NAME.describe)
MEMBER_NAME = _rule("member", 32, r"^[a-z][a-z0-9_]*$",
                    "lowercase letters, digits and '_', starting with a letter")


def check_name(rule: NameRule, value: str, *, field: str | None = None) -> str:
    """Return ``value`` if it obeys ``rule``; raise :class:`InvalidName` naming the rule if not."""
    where = field or "name"
    if not isinstance(value, str) or not value:
        raise InvalidName(f"{rule.kind} name is empty", field=where)
    if len(value) > rule.max_length:
        raise InvalidName(
            f"{rule.kind} name {value!r} is {len(value)} characters; "
            f"at most {rule.max_length} allowed",
            field=where,
        )
    if not rule.pattern.match(value):
        raise InvalidName(f"{rule.kind} name {value!r} must be {rule.describe}", field=where)
    return value


def split_slice_ref(ref: str) -> tuple[str, str]:
    """Split ``project/slice`` into its two checked names."""
    project, sep, slice_name = ref.partition("/")
    if not sep or "/" in slice_name:
        raise InvalidName(f"a slice is named 'project/slice', got {ref!r}", field="slice")
    return check_name(PROJECT_NAME, project, field="project"), check_name(SLICE_NAME, slice_name)

"""The Lua scripts of the stores, one `.lua` file each, read once from this package.

Each script opens with a header that names every KEYS and ARGV position and what it
returns, and binds the named positions to locals before its body:

    -- KEYS[1] delivery: the delivery hash
    -- KEYS[2..] subscriber_set: every subscriber set (a repeated group of one)
    -- ARGV[1] owner: who asks
    -- ARGV[2..] field, value: the pairs to set (a repeated group of two)
    -- ARGV[..] position: then any number of these, after the group before
    -- Returns: ...
    local delivery = KEYS[1]
    local owner = ARGV[1]

Every key a script touches arrives in KEYS (Redis Cluster requires it); no script builds a
key name. A line `-- include: _name` puts the shared Lua of `_name.lua` before the script.
Each store's wrapper (a plain function of named arguments) builds KEYS and ARGV in the
header's order; tests/test_scripts.py holds each wrapper to its header.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from dataclasses import dataclass

# What a wrapper returns: the KEYS and the ARGV of one call, in the header's order.
ScriptArgs = tuple[list[str], list[str | int | bytes]]

_SLOT = re.compile(r"^-- (KEYS|ARGV)\[(\d+|\d*\.\.)\] ([\w, ]+):")
_INCLUDE = re.compile(r"^-- include: (_\w+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Slot:
    """One declared position, or a group of positions repeated any number of times."""

    names: tuple[str, ...]
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str  # with its includes before it: what Redis runs
    keys: tuple[Slot, ...]
    argv: tuple[Slot, ...]


def parse_header(text: str) -> tuple[tuple[Slot, ...], tuple[Slot, ...]]:
    """The KEYS and ARGV a script's header declares, in order."""
    declared: dict[str, list[Slot]] = {"KEYS": [], "ARGV": []}
    for line in text.splitlines():
        if not line.startswith("--"):
            break  # the header ends where the code starts
        match = _SLOT.match(line)
        if match is None:
            continue
        kind, position, names = match[1], match[2], match[3]
        slots = declared[kind]
        names_ = tuple(name.strip() for name in names.split(","))
        if position.isdigit():
            if int(position) != len(slots) + 1 or any(s.repeated for s in slots):
                raise ValueError(f"{kind}[{position}] out of order: {line!r}")
            slots.append(Slot(names_))
        else:
            start = position.removesuffix("..")
            if start and (int(start) != len(slots) + 1 or any(s.repeated for s in slots)):
                raise ValueError(f"{kind}[{position}] out of order: {line!r}")
            if not start and not any(s.repeated for s in slots):
                raise ValueError(f"{kind}[..] must follow a repeated group: {line!r}")
            slots.append(Slot(names_, repeated=True))
    return tuple(declared["KEYS"]), tuple(declared["ARGV"])


def _read(name: str) -> str:
    return importlib.resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")


@functools.cache
def load(name: str) -> LuaScript:
    """`name`.lua, with the shared Lua it includes before it (read once per process)."""
    text = _read(name)
    keys, argv = parse_header(text)
    if not keys and not argv:
        raise ValueError(f"{name}.lua declares no KEYS or ARGV")
    included = [_read(library) for library in _INCLUDE.findall(text)]
    return LuaScript(name, "".join([*included, text]), keys, argv)

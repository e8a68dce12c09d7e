"""Importing user modules named on the command line (``--env-import``, ``--core-import``,
``gym:MODULE:EnvId``) so that they register their environments or cores.

Every process that builds an env or an agent (the trainer, each local or Ray actor,
evaluation workers) parses the same config and calls :func:`import_modules` before it
reads a registry, so a module imported here is imported everywhere. A failed import is
a ``ValueError`` naming the module and the error (one line; the launchers exit 2).
"""

from __future__ import annotations

import importlib
from typing import List


def split_modules(spec: str) -> List[str]:
    """``"a, b.c"`` -> ``["a", "b.c"]``; empty entries are an error."""
    if not spec or not spec.strip():
        return []
    names = [s.strip() for s in spec.split(",")]
    if any(not n for n in names):
        raise ValueError(f"module list {spec!r} has an empty name")
    return names


def import_module(name: str, option: str) -> None:
    """Import ``name``; ValueError ``"<option>: cannot import module 'x': Error: msg"`` on failure."""
    try:
        importlib.import_module(name)
    except Exception as e:   # ImportError, or whatever the module raises while registering
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{option}: cannot import module {name!r}: {type(e).__name__}: {msg}") from None


def import_modules(spec: str, option: str) -> List[str]:
    """Import every module of the comma list ``spec``; returns their names."""
    names = split_modules(spec)
    for name in names:
        import_module(name, option)
    return names

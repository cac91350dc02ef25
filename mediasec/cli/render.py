"""Rendering results: JSON documents (versioned) and short human-readable text."""

from __future__ import annotations

import json
import sys

from mediasec import __version__
from mediasec.io.fs import AtomicOutput

__all__ = ["write_json", "warn"]


def write_json(target: str | None, schema: str, body: dict) -> None:
    """Write ``{"schema": ..., "version": ..., **body}`` to ``target`` ('-' = stdout)."""
    if not target:
        return
    doc = {"schema": schema, "version": __version__, **body}
    text = json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out = AtomicOutput(target)
    with out as f:
        f.write(text.encode())
        out.commit()


def warn(path: str, message: str) -> None:
    print(f"mediasec: {path}: warning: {' '.join(message.split())}", file=sys.stderr)

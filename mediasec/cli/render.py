"""Rendering results: JSON documents (versioned) and short human-readable text."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time

from mediasec import __version__
from mediasec.errors import EnvironmentFailure, UsageError
from mediasec.io.fs import AtomicOutput, env_error

__all__ = ["write_json", "warn", "Progress", "json_option", "json_and_operand",
           "check_side_outputs", "side_outputs_or_undo"]


def json_option(help_text: str):
    """``--json [FILE|-]`` for verbs whose ``--json`` was a flag: alone it means stdout."""
    import click
    return click.option("--json", "json_target", is_flag=False, flag_value="-", default=None,
                        metavar="[FILE|-]", help=help_text)


def json_and_operand(json_target: str | None, operand: str | None, what: str):
    """``(json_target, operand)``: in ``VERB --json OPERAND`` the optional value took the
    operand; give it back (stdout JSON, as the flag always meant)."""
    import click
    if operand is None:
        if json_target not in (None, "-"):
            return "-", json_target
        raise click.UsageError(f"Missing argument '{what}'.")
    return json_target, operand


def write_json(target: str | None, schema: str, body: dict, *, private: bool = False) -> None:
    """Write ``{"schema": ..., "version": ..., **body}`` to ``target`` ('-' = stdout).

    ``private``: the document holds patient data (labels): the file is mode 0600."""
    if not target:
        return
    doc = {"schema": schema, "version": __version__, **body}
    if target == "-":
        for part in json_parts(doc):
            sys.stdout.write(part)
        sys.stdout.flush()
        return
    out = AtomicOutput(target, mode=0o600 if private else 0o644)
    with out as f:
        try:
            for part in json_parts(doc):
                f.write(part.encode())
        except OSError as exc:
            raise env_error(exc, target) from exc
        out.commit()


def json_parts(doc: dict, size: int = 1 << 16):
    """``json.dumps(doc, indent=2, default=str) + "\\n"`` in pieces of about ``size``
    characters: the indenting encoder makes one small string per token, and joining them
    all at once held a build's 8,000-file result several times over (tens of MB).

    The text is made by ``_indented`` (the standard library's indenting encoder is pure
    Python, one generator step per token: a third of a many-file build's parent CPU);
    ``tests/test_json_parts.py`` holds it to ``json.dumps`` byte for byte."""
    parts: list[str] = []
    n = 0
    for token in _indented(doc, "\n"):
        parts.append(token)
        n += len(token)
        if n >= size:
            yield "".join(parts)
            parts, n = [], 0
    parts.append("\n")
    yield "".join(parts)


_esc = json.encoder.encode_basestring_ascii   # the C version where there is one
_INF = float("inf")


def _float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return float.__repr__(o)


def _scalar(o):
    """The JSON text of a scalar as ``json.dumps`` makes it, or None for a container (or
    a value ``default=str`` turns into text: the caller gives ``str(o)``)."""
    if isinstance(o, str):
        return _esc(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, float):
        return _float(o)
    return None


def _key(k) -> str:
    if isinstance(k, str):
        return _esc(k)
    if isinstance(k, float):
        return _esc(_float(k))
    if k is True:
        return '"true"'
    if k is False:
        return '"false"'
    if k is None:
        return '"null"'
    if isinstance(k, int):
        return _esc(int.__repr__(k))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _indented(o, nl: str, _flush: int = 64):
    """The indented JSON text of ``o`` (at the indentation ``nl`` starts a line with), in
    pieces: scalars are joined in place, one generator step per container (and per
    ``_flush`` scalars, so no piece grows with a long list)."""
    s = _scalar(o)
    if s is not None:
        yield s
        return
    if isinstance(o, (list, tuple)):
        if not o:
            yield "[]"
            return
        items = ((None, v) for v in o)
        open_, close = "[", "]"
    elif isinstance(o, dict):
        if not o:
            yield "{}"
            return
        items = o.items()
        open_, close = "{", "}"
    else:
        yield from _indented(str(o), nl)
        return
    inner = nl + "  "
    buf = [open_]
    first = True
    for k, v in items:
        buf.append(inner if first else "," + inner)
        first = False
        if k is not None or close == "}":
            buf.append(_key(k) + ": ")
        s = _scalar(v)
        if s is None and not isinstance(v, (list, tuple, dict)):
            s = _scalar(str(v))
        if s is not None:
            buf.append(s)
            if len(buf) >= _flush:
                yield "".join(buf)
                buf = []
        else:
            yield "".join(buf)
            buf = []
            yield from _indented(v, inner)
    buf.append(nl + close)
    yield "".join(buf)


def check_side_outputs(*targets: str | None, inputs=(), outputs=()) -> None:
    """Before any work: each ``--json``/``--label`` FILE must be writable where it is
    asked for (its folder exists and is writable, it is not a folder or a device, not an
    input, not the main output, not another side output). A failure after the job would
    otherwise come with the main output already in place."""
    seen: list[str] = []
    others = [os.path.abspath(os.fspath(p)) for p in (*inputs, *outputs) if p]
    for target in targets:
        if not target or target == "-":
            continue
        path = os.path.abspath(os.fspath(target))
        if os.path.isdir(path):
            raise UsageError("is a folder; give a file name", path=target,
                             code="USAGE_OUTPUT_IS_DIR")
        if os.path.lexists(path) and not os.path.isfile(path):
            raise UsageError("exists and is not a regular file; it is never replaced",
                             path=target, code="USAGE_OUTPUT_NOT_REGULAR")
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise UsageError(f"parent folder {parent} does not exist", path=target,
                             code="USAGE_NO_OUTPUT_DIR")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise EnvironmentFailure(f"folder {parent} is not writable", path=target,
                                     code="ENV_PERMISSION")
        for other in others + seen:
            if path == other or (os.path.exists(path) and os.path.exists(other)
                                 and os.path.samefile(path, other)):
                raise UsageError("is also an input or another output of this command",
                                 path=target, code="USAGE_OUTPUT_IS_INPUT")
        seen.append(path)


@contextlib.contextmanager
def side_outputs_or_undo(main_output: str, *, existed: bool):
    """Write the side outputs (JSON, label) inside this block: if one fails, the main
    output this run made is removed again (all or nothing). An output that existed before
    (``--force``) is already replaced and stays."""
    try:
        yield
    except BaseException:
        if not existed:
            path = os.path.abspath(os.fspath(main_output))
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        raise


def warn(path: str, message: str) -> None:
    print(f"mediasec: {path}: warning: {' '.join(message.split())}", file=sys.stderr)


class Progress:
    """Progress for people (a bar on a terminal) or robots (JSON lines, at most 10/s)."""

    def __init__(self, mode: str | None):
        self.json = mode == "json"
        self.bar = mode is None and sys.stderr.isatty()
        self.last = 0.0
        self.pending: dict | None = None
        self.total = 0
        self.done = 0

    def start(self, total: int) -> None:
        self.total = total
        self.done = 0

    def bytes(self, n: int, name: str) -> None:
        self.done += n
        if self.json or self.bar:
            self.event({"event": "progress", "done_bytes": self.done,
                        "total_bytes": self.total, "file": name})

    def __call__(self, event: dict) -> None:
        self.event(event)

    def event(self, event: dict) -> None:
        if not (self.json or self.bar) or event.get("event") != "progress":
            return
        now = time.monotonic()
        if now - self.last >= 0.1 or event.get("done_bytes") == event.get("total_bytes"):
            self._emit(event)
            self.last = now
            self.pending = None
        else:
            self.pending = event

    def _emit(self, event: dict) -> None:
        if self.json:
            sys.stderr.write(json.dumps(event) + "\n")
        else:
            total = event.get("total_bytes") or 1
            frac = min(1.0, event["done_bytes"] / total)
            width = 30
            fill = int(frac * width)
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}% "
                             f"{event['done_bytes'] / 1e6:9.1f}/{total / 1e6:.1f} MB "
                             f"{event.get('file', '')[:40]:<40}")
        sys.stderr.flush()

    def finish(self, result: dict) -> None:
        if self.pending is not None:
            self._emit(self.pending)
        if self.bar:
            sys.stderr.write("\n")
        if self.json:
            sys.stderr.write(json.dumps({"event": "result", **result}) + "\n")
        sys.stderr.flush()

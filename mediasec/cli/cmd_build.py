"""``mediasec build SRC... -o OUT``: a pile of DICOM files -> a conformant File-set folder.

Profile default: ``STD-GEN-USB-JPEG`` for a folder (a USB stick's content: FAT32 rules,
Explicit VR LE plus the JPEG syntaxes). ISO output and the secure profiles arrive with the
secure-disc work and are refused with a usage error for now.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import click

from mediasec._data import media_profile
from mediasec.cli.main import cli
from mediasec.errors import UsageError
from mediasec.io.folder import FolderSink, collect_inputs, open_input, resolve_file_id
from mediasec.io.fs import AtomicOutput
from mediasec.media.build import BuildResult, plan_build, scan_inputs, write_plan

DEFAULT_FOLDER_PROFILE = "STD-GEN-USB-JPEG"


class _Progress:
    """JSON lines on stderr, at most 10 a second (the last one always)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0
        self.pending: dict | None = None

    def __call__(self, event: dict) -> None:
        if not self.enabled or event.get("event") != "progress":
            return
        now = time.monotonic()
        if now - self.last >= 0.1:
            self._emit(event)
            self.last = now
            self.pending = None
        else:
            self.pending = event

    def _emit(self, event: dict) -> None:
        sys.stderr.write(json.dumps(event) + "\n")
        sys.stderr.flush()

    def finish(self, result: dict) -> None:
        if not self.enabled:
            return
        if self.pending is not None:
            self._emit(self.pending)
        self._emit({"event": "result", **result})


def _write_json(target: str, doc: dict) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if target == "-":
        click.echo(text, nl=False)
        return
    out = AtomicOutput(target)
    with out as f:
        f.write(text.encode())
        out.commit()


@cli.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "output", required=True, type=click.Path(),
              help="Output folder (must not exist). An .iso name is refused for now.")
@click.option("--profile", "profile_name", default=None,
              help=f"Media application profile (default for a folder: {DEFAULT_FOLDER_PROFILE}).")
@click.option("--fill-missing", is_flag=True,
              help="Make up missing Type 1 directory keys (consistently; each one reported).")
@click.option("--json", "json_target", default=None, metavar="FILE|-",
              help="Write the mediasec.build/1 result as JSON to FILE or stdout.")
@click.option("--fileset-id", default="", help="File-set ID (0-16 of A-Z 0-9 _).")
@click.option("--fileset-uid", default=None,
              help="File-set UID for (0002,0003) of the DICOMDIR (default: a new 2.25 UID).")
@click.option("--progress", type=click.Choice(["json"]), default=None,
              help="Progress as JSON lines on stderr.")
def build_cmd(sources, output, profile_name, fill_missing, json_target, fileset_id,
              fileset_uid, progress):
    """Build a DICOM File-set (DICOMDIR + files) from SRC files and folders."""
    if output.lower().endswith(".iso"):
        raise UsageError("ISO output arrives with the secure-disc work; give a folder",
                         path=output, code="USAGE_ISO_NOT_YET")
    profile = media_profile(profile_name or DEFAULT_FOLDER_PROFILE)
    if profile.secure:
        raise UsageError(f"{profile.id}: secure profiles need --encrypt-to or --password-env",
                         path=output, code="USAGE_SECURE_NEEDS_RECIPIENT")
    if os.path.lexists(output):
        raise UsageError("output already exists; choose a new path", path=output,
                         code="USAGE_OUTPUT_EXISTS")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UsageError("output folder does not exist", path=output,
                         code="USAGE_NO_OUTPUT_DIR")
    fileset_uid = fileset_uid or f"2.25.{uuid.uuid4().int}"
    reporter = _Progress(progress == "json")

    inputs = collect_inputs(sources)
    scan = scan_inputs(inputs, profile=profile, opener=open_input, resolve=resolve_file_id,
                       on_progress=reporter)
    plan = plan_build(scan, profile=profile, opener=open_input, fileset_uid=fileset_uid,
                      fileset_id=fileset_id, fill_missing=fill_missing)
    with FolderSink(output) as sink:
        write_plan(plan, sink, on_progress=reporter)
    result = BuildResult(plan=plan, scan=scan, output=os.path.abspath(output), written=True)
    doc = result.to_dict()
    if json_target:
        _write_json(json_target, doc)
    reporter.finish({"outcome": doc["outcome"], "counts": doc["counts"],
                     "output": doc["output"]})
    if json_target is None and progress is None:
        c = doc["counts"]
        click.echo(f"{output}: {c['instances']} instances, {c['converted']} converted, "
                   f"{c['skipped']} skipped, {c['duplicates']} duplicates, {c['made_up']} "
                   f"made-up values ({profile.id})")
    return 0

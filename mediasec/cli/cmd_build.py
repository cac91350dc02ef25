"""``mediasec build SRC... -o OUT``: a pile of DICOM files -> a File-set folder or disc image.

* ``-o NAME.iso``: an ISO 9660 image (Level 1 names; a UDF 1.02 bridge for DVD and BD
  profiles), written in one pass: the layout comes from the planned (protected) sizes and
  every file is encrypted straight into the image.
* ``-o DIR``: a folder (a USB stick's content), built beside the target, renamed at the end.

Profiles: ``--profile`` wins; else STD-GEN-CD (or STD-GEN-SEC-CD with recipients) for an
image and STD-GEN-USB-JPEG (or STD-GEN-SEC-USB-JPEG) for a folder. With a secure profile
every DICOM file, the DICOMDIR included, is a Secure DICOM File; a non-secure profile with
recipients is refused (PS3.11: the secure format only on secure profiles).
"""

from __future__ import annotations

import contextlib
import os

import click

from mediasec.api import BuildRequest, build
from mediasec.cli._dataset_signing import dataset_signing_fields, dataset_signing_options
from mediasec.cli._protection import load_protection, protection_options
from mediasec.cli.cmd_deid import deid_build_options, deid_job
from mediasec.cli.main import cli
from mediasec.cli.render import (Progress, check_side_outputs, side_outputs_or_undo, warn,
                                 write_json)
from mediasec.cms.secure import ProtectOptions
from mediasec.media.jobs import DEFAULT_FOLDER_PROFILE


@cli.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "output", required=True, type=click.Path(),
              help="NAME.iso for a disc image, else a folder (must not exist).")
@click.option("--profile", "profile_name", default=None,
              help="Media application profile (default: STD-GEN-CD for an image, "
                   f"{DEFAULT_FOLDER_PROFILE} for a folder; their -SEC- variants with "
                   "recipients).")
@protection_options
@click.option("--span", is_flag=True, help="Split a job too big for one medium over several "
              "images/folders at study (else series) boundaries, each a complete File-set.")
@click.option("--capacity", type=click.IntRange(1 << 20), default=None, metavar="BYTES",
              help="Override the medium capacity of the profile (e.g. 650 MB CDs).")
@click.option("--pdi", is_flag=True, help="IHE PDI content: README.TXT, INDEX.HTM, IHE_PDI/.")
@click.option("--pdi-institution", default="", help="Institution named in README.TXT.")
@click.option("--pdi-contact", default="", help="Contact named in README.TXT.")
@click.option("--no-manifest", is_flag=True, help="Do not put MANIFEST.SHA on the medium.")
@click.option("--label", "label_target", default=None, metavar="FILE",
              help="Write label data (patient, study dates, disc n of m) as JSON; it holds "
                   "patient data.")
@click.option("--fill-missing", is_flag=True,
              help="Make up missing Type 1 directory keys (consistently; each one reported).")
@click.option("--json", "json_target", default=None, metavar="FILE|-",
              help="Write the mediasec.build/1 result as JSON to FILE or stdout.")
@click.option("--fileset-id", default=None, help="File-set ID (0-16 of A-Z 0-9 _); the "
              "volume identifier of an image (default for images: DICOM).")
@click.option("--fileset-uid", default=None,
              help="File-set UID for (0002,0003) of the DICOMDIR (default: a new 2.25 UID).")
@click.option("--progress", type=click.Choice(["json"]), default=None,
              help="Progress as JSON lines on stderr (default: a bar on a terminal).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes that encrypt and sign (default: 2, or 1 on one CPU).")
@click.option("--verify", "verify", type=click.Choice(["none", "quick", "full"]),
              default="quick", show_default=True,
              help="Read the medium back before it is committed: every file's SHA-256 and "
                   "the manifest, and for secure media the DICOMDIR and a sample (quick) or "
                   "all (full) of the files decrypted and checked.")
@deid_build_options
@dataset_signing_options
def build_cmd(sources, output, profile_name, span, capacity, pdi, pdi_institution,
              pdi_contact, no_manifest, label_target, fill_missing, json_target, fileset_id,
              fileset_uid, progress, workers, cipher, digest, framing, verify, sign_datasets,
              authorized_copy, drop_covering_signatures, **flags):
    """Build a DICOM File-set (DICOMDIR + files) or disc image from SRC files and folders."""
    check_side_outputs(label_target, json_target, inputs=sources, outputs=(output,))
    policy, recipients, signers = load_protection(subject=output, cipher=cipher,
                                                  digest=digest, **flags)
    signing = dataset_signing_fields(sign_datasets, authorized_copy, drop_covering_signatures,
                                     signers)
    if signing["dataset_signer"] is not None and not recipients:
        signers = []        # a plain medium: the key signs the instances only (no CMS)
    request = BuildRequest(
        sources=tuple(sources), output=output, profile=profile_name, recipients=recipients,
        signers=signers, policy=policy,
        options=ProtectOptions(cipher=cipher, framing=framing, digest=digest), span=span,
        capacity=capacity, pdi=pdi, pdi_institution=pdi_institution, pdi_contact=pdi_contact,
        manifest=not no_manifest, labels=bool(label_target), fill_missing=fill_missing,
        fileset_id=fileset_id, fileset_uid=fileset_uid, workers=workers, verify=verify,
        deidentify=deid_job(flags), **signing)
    reporter = Progress(progress)
    result = build(request, on_progress=reporter)
    doc = result.to_dict()
    for f in doc.get("deidentify", {}).get("findings", []):
        warn(f["path"], f["message"])
    for f in (doc.get("dataset_signatures") or {}).get("findings", []):
        warn(f["source"], f"{f['code']}: " + _DATASET_NOTES.get(f["code"], "{reason}")
             .format_map({"reason": "", **f}))
    with contextlib.ExitStack() as undo:
        for image in result.images:   # made by this run (a build never replaces)
            undo.enter_context(side_outputs_or_undo(image, existed=False))
        if label_target:
            write_json(label_target, "mediasec.label/1", result.labels, private=True)
        if json_target:
            write_json(json_target, "mediasec.build/1",
                       {k: v for k, v in doc.items() if k not in ("schema", "version")})
    reporter.finish({"outcome": doc["outcome"], "counts": doc["counts"],
                     "images": list(result.images)})
    if json_target != "-" and progress is None:
        c, n, iso = doc["counts"], len(result.images), output.lower().endswith(".iso")
        click.echo(f"{', '.join(os.path.basename(p) for p in result.images)}: "
                   f"{c['instances']} instances on {n} {'image' if iso else 'folder'}"
                   f"{'s' if n > 1 else ''} ({result.profile}"
                   f"{', secure' if result.secure else ''}); {c['converted']} converted, "
                   f"{c['skipped']} skipped, {c['duplicates']} duplicates, "
                   f"{c['made_up']} made-up values")
        for s in doc["skipped"][:_SHOW_SKIPPED]:  # which files, and why
            click.echo(f"  skipped {s['path']}: {s.get('reason') or s['code']}")
        if len(doc["skipped"]) > _SHOW_SKIPPED:
            click.echo(f"  ... and {len(doc['skipped']) - _SHOW_SKIPPED} more "
                       "(--json lists them all)")
    return 0


_SHOW_SKIPPED = 5
_DATASET_NOTES = {
    "SIG_STRIPPED_STALE": "removed dataset signature {mac_id} ({uid}): the conversion broke it",
    "SIG_DROPPED_FOR_STATUS": "removed dataset signature {mac_id} ({uid}), which covered the "
                              "SOP Instance Status",
}

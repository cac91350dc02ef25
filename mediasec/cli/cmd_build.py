"""``mediasec build SRC... -o OUT``: a pile of DICOM files -> a File-set folder or disc image.

* ``-o NAME.iso``: an ISO 9660 image (Level 1 names; a UDF 2.60 bridge for DVD and BD
  profiles), written in one pass: the layout comes from the planned (protected) sizes and
  every file is encrypted straight into the image.
* ``-o DIR``: a folder (a USB stick's content), built beside the target, renamed at the end.

Profiles: ``--profile`` wins; else STD-GEN-CD (or STD-GEN-SEC-CD with recipients) for an
image and STD-GEN-USB-JPEG (or STD-GEN-SEC-USB-JPEG) for a folder. With a secure profile
every DICOM file, the DICOMDIR included, is a Secure DICOM File; a non-secure profile with
recipients is refused (PS3.11: the secure format only on secure profiles).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import uuid

import click

from mediasec._data import media_profile
from mediasec.cli._protection import load_protection, protection_options
from mediasec.cli.main import cli
from mediasec.cli.render import Progress, write_json
from mediasec.cms.secure import ProtectOptions
from mediasec.errors import EnvironmentFailure, InputError, UsageError
from mediasec.io.folder import FolderSink, collect_inputs, open_input, resolve_file_id
from mediasec.io.fs import AtomicOutput
from mediasec.io.iso import IsoFile, IsoImage
from mediasec.io.prefetch import Prefetcher
from mediasec.media.build import (BuildResult, ScanResult, plan_build, release_scan_values,
                                  scan_inputs)
from mediasec.media.disc import (MANIFEST_NAME, SECTOR, Overhead, Placeholder,
                                 TeeProducer, estimate_disc_bytes, label_data, manifest_bytes,
                                 manifest_line_size, pdi_files, split_for_media)
from mediasec.media.plan import BytesProducer, write_producer
from mediasec.media.secure import make_protector
from mediasec.cli._dataset_signing import dataset_signing_hook, dataset_signing_options

DEFAULT_FOLDER_PROFILE = "STD-GEN-USB-JPEG"
DEFAULT_ISO_PROFILE = "STD-GEN-CD"


def _choose_profile(name: str | None, *, iso: bool, secure: bool, output: str):
    if name:
        profile = media_profile(name)
    else:
        base = DEFAULT_ISO_PROFILE if iso else DEFAULT_FOLDER_PROFILE
        profile = media_profile(base.replace("STD-GEN-", "STD-GEN-SEC-") if secure else base)
    if secure and not profile.secure:
        raise UsageError(f"{profile.id} is not a secure profile, and PS3.11 allows Secure DICOM "
                         f"Files only on secure ones; use "
                         f"{profile.id.replace('STD-GEN-', 'STD-GEN-SEC-')}", path=output,
                         code="USAGE_PROFILE_NOT_SECURE")
    if iso and profile.family == "usb":
        raise UsageError(f"{profile.id} is a USB profile; give a folder, or a CD/DVD/BD profile "
                         "for an image", path=output, code="USAGE_PROFILE_MEDIUM")
    return profile


def _check_output(path: str) -> None:
    if os.path.lexists(path):
        raise UsageError("output already exists; choose a new path", path=path,
                         code="USAGE_OUTPUT_EXISTS")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UsageError("output folder does not exist", path=path, code="USAGE_NO_OUTPUT_DIR")


def _disc_names(output: str, n: int, iso: bool) -> list[str]:
    if n == 1:
        return [output]
    stem, ext = (output[:-4], output[-4:]) if iso else (output.rstrip("/"), "")
    return [f"{stem}-{i}{ext}" for i in range(1, n + 1)]


@dataclasses.dataclass
class _Disc:
    """One medium: its plan and its files ``(components, producer, role)`` in write order."""

    plan: object
    files: list

    def writing(self, reporter, workers: int):
        """A context giving the files' producers, hashing tees around worker-made bytes."""
        return _Writing(self, reporter, workers)


class _Writing:
    """The producers of one medium: hashing tees around (worker-made) bytes; entering it
    starts the workers."""

    def __init__(self, disc: _Disc, reporter, workers: int):
        self.disc = disc
        self.prefetch = Prefetcher([p for _c, p, _r in disc.files], workers=workers)
        self.tees = [TeeProducer(w, reporter.bytes, "/".join(c))
                     for (c, _p, _r), w in zip(disc.files, self.prefetch.wrapped)]

    def __enter__(self):
        self.prefetch.__enter__()
        return self

    def __exit__(self, *exc):
        return self.prefetch.__exit__(*exc)

    def manifest(self) -> bytes:
        digests = []
        for (comps, _p, role), tee in zip(self.disc.files, self.tees):
            if role != "manifest":
                if tee.sha256 is None:
                    raise EnvironmentFailure("a file was not written before the manifest")
                digests.append(("/".join(comps), tee.sha256))
        return manifest_bytes(digests)


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
@dataset_signing_options
def build_cmd(sources, output, profile_name, span, capacity, pdi, pdi_institution,
              pdi_contact, no_manifest, label_target, fill_missing, json_target, fileset_id,
              fileset_uid, progress, workers, cipher, digest, framing, sign_datasets,
              authorized_copy, drop_covering_signatures, **flags):
    """Build a DICOM File-set (DICOMDIR + files) or disc image from SRC files and folders."""
    iso = output.lower().endswith(".iso")
    policy, recipients, signers = load_protection(subject=output, cipher=cipher,
                                                  digest=digest, **flags)
    profile = _choose_profile(profile_name, iso=iso, secure=bool(recipients or signers),
                              output=output)
    if profile.secure and not recipients:
        raise UsageError(f"{profile.id} is a secure profile: give --encrypt-to CERT and/or "
                         "--password-env VAR", path=output, code="USAGE_SECURE_NEEDS_RECIPIENT")
    _check_output(output)
    if fileset_id is None:
        fileset_id = "DICOM" if iso else ""
    base_uid = fileset_uid or f"2.25.{uuid.uuid4().int}"
    reporter = Progress(progress)
    protect = (make_protector(recipients=recipients, signers=signers, policy=policy,
                              options=ProtectOptions(cipher=cipher, framing=framing,
                                                     digest=digest))
               if profile.secure else None)
    dataset_report: list[dict] = []
    protect = dataset_signing_hook(protect, signers, policy, sign_datasets, authorized_copy,
                                   drop_covering_signatures, dataset_report.append)
    cap = capacity or profile.capacity_bytes
    unbounded = dataclasses.replace(profile, capacity_bytes=None)

    inputs = collect_inputs(sources)
    scan = scan_inputs(inputs, profile=profile, opener=open_input, resolve=resolve_file_id,
                       on_progress=reporter.event)
    whole = plan_build(scan, profile=unbounded, opener=open_input, fileset_uid=base_uid,
                       fileset_id=fileset_id, fill_missing=fill_missing, protect=protect)
    udf = iso and profile.family in ("dvd", "bd")
    overhead = Overhead(udf=udf)
    # the DICOMDIR, PDI pages and their folder, and the manifest: a few sectors each
    reserve = 4 * SECTOR + (4 * SECTOR if pdi else 0)
    groups = [None]
    need = estimate_disc_bytes([f.size for f in whole.files],
                               len({f.file_id[:k] for f in whole.files
                                    for k in range(1, len(f.file_id))}), overhead)
    if cap is not None and need + reserve > cap:
        if not span:
            raise InputError(f"about {need + reserve} bytes do not fit on one {profile.medium} "
                             f"({cap} bytes); add --span to split the job over several media "
                             "at study boundaries", path=output, code="PLAN_CAPACITY")
        size_of = {f.source: f.size for f in whole.files if f.role == "instance"}
        groups = split_for_media(whole.model, size_of.__getitem__, cap, reserve=reserve,
                                 overhead=overhead)
    names = _disc_names(output, len(groups), iso)
    for n in names[1:]:
        _check_output(n)

    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    discs = []
    for i, group in enumerate(groups, 1):
        if group is None:
            plan = whole
        else:
            keep = set(group)
            sub = ScanResult(tuple(s for s in scan.scans if s.source in keep), scan.skipped,
                             scan.input_filesets)
            plan = plan_build(sub, profile=unbounded, opener=open_input,
                              fileset_uid=f"{base_uid}.{i}", fileset_id=fileset_id,
                              fill_missing=fill_missing, protect=protect)
        files = [(tuple(pf.file_id), pf.producer, pf.role) for pf in plan.files]
        if pdi:
            for comps, data in pdi_files(plan.model, secure=profile.secure, profile_id=profile.id,
                                         disc=i, of=len(groups), institution=pdi_institution,
                                         contact=pdi_contact, created=created).items():
                files.append((comps, BytesProducer(data, kind="content"), "content"))
        if not no_manifest:  # it covers every other file of the medium
            msize = sum(manifest_line_size("/".join(c)) for c, _p, _r in files)
            files.append(((MANIFEST_NAME,), Placeholder(msize), "manifest"))
        discs.append(_Disc(plan, files))

    release_scan_values(scan)  # every plan is made: the records hold what is needed
    reporter.start(sum(p.size for d in discs for _c, p, _r in d.files))
    written, digests = [], []
    if iso:
        outs = [AtomicOutput(n, anonymous=True) for n in names]
        try:
            for i, (disc, out) in enumerate(zip(discs, outs), 1):
                w = disc.writing(reporter, workers)
                image = IsoImage(
                    [IsoFile(c, t, "/".join(c)) for (c, _p, _r), t in zip(disc.files, w.tees)],
                    volume_id=fileset_id, udf=udf,
                    interchange_level=1 if profile.family == "cd" else 3,
                    set_size=len(discs), seqnum=i, name=out.target)
                if cap is not None and image.size > cap:
                    raise InputError(f"the image needs {image.size} bytes, over the {cap}-byte "
                                     "capacity of the medium", path=out.target,
                                     code="PLAN_CAPACITY")
                with w:
                    size = image.write(out, patch={} if no_manifest else
                                       {(MANIFEST_NAME,): w.manifest})
                    digests.append([t.sha256 for t in w.tees])
                written.append(size)
            for out in outs:
                out.commit()
        finally:
            for out in outs:
                if not out.committed:
                    out.abort()
    else:
        for name, disc in zip(names, discs):
            with FolderSink(name) as sink, disc.writing(reporter, workers) as w:
                for (comps, _p, role), tee in zip(disc.files, w.tees):
                    content = role in ("content", "manifest")
                    with sink.open_file(comps, tee.size, content=content) as f:
                        if role == "manifest":
                            f.write(w.manifest())
                            reporter.bytes(tee.size, MANIFEST_NAME)
                        else:
                            write_producer(tee, f)
                sink.commit()
                digests.append([t.sha256 for t in w.tees])
            written.append(sum(p.size for _c, p, _r in disc.files))

    images = []
    for i, (name, disc, size, sums) in enumerate(zip(names, discs, written, digests), 1):
        r = BuildResult(plan=disc.plan, scan=scan, output=os.path.abspath(name), written=True)
        d = r.to_dict()
        images.append({"path": os.path.abspath(name), "disc": i, "of": len(discs),
                       "kind": "iso" if iso else "folder", "size": size,
                       "fileset_uid": disc.plan.fileset_uid, "counts": d["counts"],
                       "dicomdir": d["dicomdir"],
                       "files": [{"path": "/".join(c), "role": r_, "size": p.size,
                                  "sha256": h}
                                 for (c, p, r_), h in zip(disc.files, sums)
                                 if r_ != "manifest"]})
    doc = BuildResult(plan=whole, scan=scan, output=os.path.abspath(names[0]),
                      written=True).to_dict()
    doc.update({"secure": profile.secure, "images": images,
                "protection": ({"cipher": cipher, "framing": framing,
                                "integrity": "signedData" if signers else "digestedData",
                                "recipients": len(recipients)} if profile.secure else None)})
    if sign_datasets or authorized_copy or dataset_report:
        doc["dataset_signatures"] = {"profile": sign_datasets or ("authorization"
                                                                 if authorized_copy else None),
                                     "authorized_copy": authorized_copy,
                                     "findings": dataset_report}
    if label_target:
        labels = {"discs": [label_data(d.plan.model, disc=i, of=len(discs),
                                       fileset_id=fileset_id)
                            for i, d in enumerate(discs, 1)]}
        write_json(label_target, "mediasec.label/1", labels, private=True)
    if json_target:
        write_json(json_target, "mediasec.build/1",
                   {k: v for k, v in doc.items() if k not in ("schema", "version")})
    reporter.finish({"outcome": doc["outcome"], "counts": doc["counts"],
                     "images": [im["path"] for im in images]})
    if json_target != "-" and progress is None:
        c = doc["counts"]
        where = ", ".join(os.path.basename(n) for n in names)
        click.echo(f"{where}: {c['instances']} instances on {len(discs)} "
                   f"{'image' if iso else 'folder'}{'s' if len(discs) > 1 else ''} "
                   f"({profile.id}{', secure' if profile.secure else ''}); "
                   f"{c['converted']} converted, {c['skipped']} skipped, "
                   f"{c['duplicates']} duplicates, {c['made_up']} made-up values")
    return 0

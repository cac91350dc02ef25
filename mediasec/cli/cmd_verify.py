"""``verify``, ``ls`` and ``extract``: the receiving desk's verbs for a disc, image or folder.

* ``verify MEDIUM`` - every check of ``mediasec.media.validate``, a readable summary
  (patients -> studies -> series, then problems grouped by reason code) and, with
  ``--json``, the ``mediasec.verify/1`` document. Exit 0 when everything checked is valid
  (warnings and "encrypted, not checked" included), 1 when a check failed, 2 when the
  medium cannot be read as asked (missing, not an image/folder, keys that do not open a
  secure DICOMDIR), 3 on I/O errors.
* ``ls MEDIUM`` - the tree from the DICOMDIR, or from the files' headers when it is missing
  or broken. This listing is the user's own and shows patient names; ``--json`` gives
  ``mediasec.ls/1``.
* ``extract MEDIUM -o DIR`` - valid files, decrypted, into a new folder built beside DIR
  (``.DIR.partial-*``) and renamed into place at the end; each plaintext file exists only
  as an anonymous ``O_TMPFILE`` inode until its checks pass. ``--json`` gives
  ``mediasec.extract/1``. Exit 1 when some file was not valid (it is then not written,
  unless ``--include-invalid``).

Keys and passwords reach worker processes through the pool initializer, never argv.
"""

from __future__ import annotations

import click

from mediasec.api import (ExtractRequest, ListRequest, VerifyRequest, extract, list_medium,
                          verify)
from mediasec.cli._protection import key_options, load_keys, load_trust, with_options
from mediasec.cli.main import cli
from mediasec.cli.render import (Progress, check_side_outputs, json_and_operand, json_option,
                                 side_outputs_or_undo, write_json)
from mediasec.media.verify_report import MediaReport, summarize_tree
from mediasec.report import Outcome

__all__: list[str] = []


def _workers_option(f):
    return click.option("--workers", type=click.IntRange(1, 64), default=None,
                        help="Worker processes (default: 2, or 1 on a single CPU).")(f)


# -- verify ------------------------------------------------------------------------------------

@cli.command("verify")
@click.argument("medium", type=click.Path())
@with_options(key_options)
@click.option("--profile", "profile_name", default=None,
              help="Check against this media application profile (transfer syntaxes, "
                   "secure or not).")
@click.option("--json", "json_target", default=None, metavar="FILE|-",
              help="Write the mediasec.verify/1 report to FILE or stdout.")
@click.option("--progress", type=click.Choice(["json"]), default=None,
              help="Progress as JSON lines on stderr.")
@click.option("--strict", is_flag=True, help="Exit 1 on any warning or indeterminate "
              "outcome too (e.g. signatures not checked against a trust anchor).")
@_workers_option
def verify_cmd(medium, key, cert, key_password_env, password_env, ask_password, trust,
               profile_name, json_target, progress, strict, workers):
    """Check a received disc, ISO image or File-set folder, file by file."""
    check_side_outputs(json_target, inputs=(medium,))
    reporter = Progress(progress)
    decrypters = load_keys(key, cert, key_password_env, password_env, ask_password)
    report = verify(VerifyRequest(
        medium, decrypters=decrypters, trust=load_trust(trust), profile=profile_name,
        workers=workers), on_progress=reporter)
    doc = report.to_dict()
    if json_target:
        write_json(json_target, doc["schema"], {k: v for k, v in doc.items()
                                                if k not in ("schema", "version")})
    reporter.finish({"outcome": doc["outcome"], "counts": doc["counts"]})
    if json_target != "-":
        click.echo(render_verify(report))
        if decrypters and not trust and _has_code(report, "SIG_TRUST_NOT_CHECKED"):
            click.echo("Trust: signatures were not checked against any trust anchor "
                       "(no --trust given)")
    if strict and report.outcome is not Outcome.PASSED:
        return 1
    return 1 if report.failed else 0


def _has_code(report: MediaReport, code: str) -> bool:
    return code in report.problems()


_PLURALS = {"study": "studies", "series": "series"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else _PLURALS.get(word, word + 's')}"


def render_verify(report: MediaReport, *, max_paths: int = 10) -> str:
    """The readable summary: medium, tree with counts, problems by kind, result line."""
    m = report.medium
    lines = [f"{m['path']}: {m['kind']}"
             + (f", volume {m['volume_id']!r}" if m.get("volume_id") is not None else "")
             + (f", File-set ID {m['fileset_id']!r}" if m.get("fileset_id") is not None
                else "")]
    if m.get("dicomdir"):
        fmt = {"secure": "Secure DICOM File", "plain": "plain DICOM file"}.get(
            m.get("dicomdir_format"), m.get("dicomdir_format") or "unreadable")
        rec = f", {m['records']} records" if m.get("records") is not None else ""
        lines.append(f"DICOMDIR: {fmt}{rec}; MANIFEST.SHA "
                     f"{'present' if m.get('manifest') else 'absent'}")
    summary = summarize_tree(report.tree)
    n_st = sum(len(p["studies"]) for p in summary)
    n_se = sum(len(s["series"]) for p in summary for s in p["studies"])
    n_in = sum(x["instances"] for p in summary for s in p["studies"] for x in s["series"])
    lines.append(f"{_plural(len(summary), 'patient')}, {_plural(n_st, 'study')}, "
                 f"{_plural(n_se, 'series')}, {_plural(n_in, 'instance')}")
    for i, p in enumerate(summary, 1):
        lines.append(f"  Patient {i}: {_plural(len(p['studies']), 'study')}")
        for s in p["studies"]:
            desc = f" {s['study_description']!r}" if s.get("study_description") else ""
            lines.append(f"    Study {s.get('study_date') or '-'}{desc}: "
                         f"{_plural(len(s['series']), 'series')}")
            for x in s["series"]:
                lines.append(f"      Series {x.get('series_number') or '-'} "
                             f"{x.get('modality') or '-'}: {_plural(x['instances'], 'instance')}")
    problems = report.problems()
    if problems:
        lines.append("Problems:")
        for code in sorted(problems, key=lambda c: (_sev(problems[c]), c)):
            items = problems[code]
            outcome = items[0][1].outcome.value
            files = len({p for p, _ in items if p})
            lines.append(f"  {code} ({outcome}, {_plural(len(items), 'time')}"
                         + (f" in {_plural(files, 'file')})" if files else ")"))
            for path, f in items[:max_paths]:
                lines.append(f"    {path + ': ' if path else ''}{f.message}")
            if len(items) > max_paths:
                lines.append(f"    ... and {len(items) - max_paths} more")
    c = report.counts()
    lines.append(f"Result: {report.outcome.value.upper()}: {_plural(c['files'], 'file')}, "
                 f"{c['passed']} passed ({c['with_warnings']} with warnings), "
                 f"{c['failed']} failed, {c['indeterminate']} indeterminate")
    return "\n".join(lines)


def _sev(items) -> int:
    order = {Outcome.FAILED: 0, Outcome.INDETERMINATE: 1, Outcome.WARNING: 2}
    return min(order.get(f.outcome, 3) for _, f in items)


# -- ls ----------------------------------------------------------------------------------------

@cli.command("ls")
@click.argument("medium", type=click.Path(), required=False)
@with_options(key_options)
@json_option("Write mediasec.ls/1 JSON to FILE, or stdout ('-' or no value).")
def ls_cmd(medium, key, cert, key_password_env, password_env, ask_password, trust,
           json_target):
    """List patients, studies, series and files (from the DICOMDIR, else from the files)."""
    json_target, medium = json_and_operand(json_target, medium, "MEDIUM")
    check_side_outputs(json_target, inputs=(medium,))
    body = list_medium(ListRequest(
        medium, decrypters=load_keys(key, cert, key_password_env, password_env, ask_password),
        trust=load_trust(trust)))
    notes = body["notes"]
    if json_target:
        write_json(json_target, "mediasec.ls/1", body, private=True)  # patient names
        if json_target == "-":
            return 0
    click.echo(render_ls(body))
    for n in notes:
        click.echo(f"mediasec: {medium}: note: {n}", err=True)
    return 0


def render_ls(body: dict) -> str:
    m = body["medium"]
    lines = [f"{m['path']}: {m['kind']}"
             + (f", File-set ID {m['fileset_id']!r}" if m.get("fileset_id") else "")
             + f" (tree from {body['source']})"]

    def leaf_line(n: dict, indent: str) -> str:
        num = f" #{n['instance_number']}" if n.get("instance_number") else ""
        return f"{indent}{n.get('path') or n.get('file_id')}  {n['type']}{num}"

    for node in body["tree"]:
        t = node.get("type")
        if t == "PATIENT":
            lines.append(f"Patient {node.get('patient_name') or '-'} "
                         f"[{node.get('patient_id') or '-'}]")
            for st in node.get("children", ()):
                desc = f" {st['study_description']!r}" if st.get("study_description") else ""
                lines.append(f"  Study {st.get('study_date') or '-'}{desc} "
                             f"{st.get('study_uid') or ''}")
                for se in st.get("children", ()):
                    kids = se.get("children", ())
                    lines.append(f"    Series {se.get('series_number') or '-'} "
                                 f"{se.get('modality') or '-'} ({_plural(len(kids), 'file')})")
                    for leaf in kids:
                        lines.append(leaf_line(leaf, "      "))
        elif node.get("path") or node.get("file_id"):
            lines.append(leaf_line(node, ""))
    if body["source"] == "none":
        for f in body["files"]:
            lines.append(f"{f['path']}  {f['size']} bytes")
    return "\n".join(lines)


# -- extract -----------------------------------------------------------------------------------

@cli.command("extract")
@click.argument("medium", type=click.Path())
@click.option("-o", "--output", "output", required=True, type=click.Path(),
              help="Output folder (must not exist).")
@with_options(key_options)
@click.option("--include-invalid", is_flag=True,
              help="Also write files whose checks failed (when fully decrypted).")
@click.option("--json", "json_target", default=None, metavar="FILE|-",
              help="Write the mediasec.extract/1 result to FILE or stdout.")
@click.option("--private", is_flag=True, help="Folders 0700 and files 0600 (default: "
              "0755 and 0644, whatever the umask).")
@click.option("--strict", is_flag=True, help="Exit 1 on any warning or indeterminate "
              "outcome too (the valid files are still written).")
@click.option("--progress", type=click.Choice(["json"]), default=None,
              help="Progress as JSON lines on stderr (default: a bar on a terminal).")
@_workers_option
def extract_cmd(medium, output, key, cert, key_password_env, password_env, ask_password, trust,
                include_invalid, json_target, private, strict, progress, workers):
    """Write the medium's valid DICOM files, decrypted, into a new folder."""
    check_side_outputs(json_target, inputs=(medium,), outputs=(output,))
    reporter = Progress(progress)
    report = extract(ExtractRequest(
        medium, output,
        decrypters=load_keys(key, cert, key_password_env, password_env, ask_password),
        trust=load_trust(trust), include_invalid=include_invalid, workers=workers,
        private=private), on_progress=reporter)
    results = report.results
    doc = report.to_dict()
    reporter.finish({"outcome": doc["outcome"], "counts": doc["counts"]})
    if json_target:
        with side_outputs_or_undo(output, existed=False):   # a new folder, or none
            write_json(json_target, doc["schema"], {k: v for k, v in doc.items()
                                                    if k not in ("schema", "version")})
    if json_target != "-":
        c = doc["counts"]
        click.echo(f"{output}: {c['written']} of {c['files']} files extracted, "
                   f"{c['skipped']} skipped, {c['failed']} failed"
                   + ("" if report.written else " (nothing written; no output folder made)"))
        for r in results:
            if r.output is None and r.kind in ("plain", "secure", "unreadable"):
                bad = [f for f in r.findings if f.outcome is Outcome.FAILED]
                if bad:
                    click.echo(f"mediasec: {r.path}: {bad[0].code}: {bad[0].message}",
                               err=True)
        for f in report.lost:
            if f.outcome is Outcome.FAILED:
                click.echo(f"mediasec: {medium}: {f.code}: {f.message}", err=True)
    if strict and report.outcome is not Outcome.PASSED:
        return 1
    return 1 if report.outcome is Outcome.FAILED else 0

"""``build --sign-datasets PROFILE`` / ``--authorized-copy``: the flags of the build's
``sign_dataset`` stage (``mediasec.media.dsign``); ``dataset_signing_fields`` maps them to
``BuildRequest`` fields."""

from __future__ import annotations

import click

from mediasec.media.dsign import PROFILES

__all__ = ["dataset_signing_options", "dataset_signing_fields"]


def dataset_signing_options(f):
    for o in reversed([
        click.option("--sign-datasets", type=click.Choice(list(PROFILES)), default=None,
                     metavar="PROFILE", help="Add a DICOM digital signature (PS3.15 Annex C, "
                     "this profile) to every instance before CMS protection, with "
                     "--sign-key/--sign-cert."),
        click.option("--authorized-copy", is_flag=True, help="Mark instances that are "
                     "Authorized Originals or Copies (AO/AC) as Authorized Copies (AC) and sign "
                     "them with the authorization profile; others are reported, never marked."),
        click.option("--drop-covering-signatures", is_flag=True, help="With "
                     "--authorized-copy: remove (and report) signatures covering the status "
                     "instead of refusing."),
    ]):
        f = o(f)
    return f


def dataset_signing_fields(sign_datasets, authorized_copy, drop_covering_signatures,
                           signers) -> dict:
    """The ``BuildRequest`` fields of the flags; the dataset signer is the
    --sign-key/--sign-cert signer (which also signs the CMS layer)."""
    wanted = bool(sign_datasets or authorized_copy)
    return {"sign_datasets": sign_datasets, "authorized_copy": authorized_copy,
            "drop_covering_signatures": drop_covering_signatures,
            "dataset_signer": signers[0] if signers and wanted else None}

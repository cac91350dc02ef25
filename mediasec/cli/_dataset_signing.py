"""``build --sign-datasets PROFILE`` / ``--authorized-copy``: flags to the dataset-signing hook
(``mediasec.media.dsign``), composed before the CMS protector."""

from __future__ import annotations

import click

from mediasec.errors import UsageError
from mediasec.media.dsign import compose_hooks, make_dataset_signer, make_stale_stripper
from mediasec.sign import SignRequest

__all__ = ["dataset_signing_options", "dataset_signing_hook"]


def dataset_signing_options(f):
    for o in reversed([
        click.option("--sign-datasets", type=click.Choice(["base", "creator", "authorization",
                                                           "sr"]), default=None,
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


def dataset_signing_hook(protect, signers, policy, sign_datasets, authorized_copy,
                         drop_covering, on_report):
    if authorized_copy:
        if sign_datasets not in (None, "authorization"):
            raise UsageError("--authorized-copy signs with the authorization profile",
                             code="USAGE")
        sign_datasets = "authorization"
    if not sign_datasets:
        # no new signatures, but a conversion must not hand on one it broke
        return compose_hooks(make_stale_stripper(on_report), protect)
    if not signers:
        raise UsageError("--sign-datasets needs --sign-key and --sign-cert", code="USAGE")
    hook = make_dataset_signer(signer=signers[0], request=SignRequest(profile=sign_datasets),
                               policy=policy, authorized_copy=authorized_copy,
                               drop_covering=drop_covering, on_report=on_report)
    return compose_hooks(hook, protect)

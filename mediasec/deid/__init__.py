"""PS3.15 Annex E attribute confidentiality: de-identify with the originals encrypted
inside (Encrypted Attributes Sequence), re-identify with the key.

* ``profile``  Table E.1-1 (``profiles/``) and the options: the action for each attribute.
* ``mapping``  keyed, deterministic UIDs, pseudonyms and per-patient date shifts.
* ``engine``   the data-set walk (any depth) and the Modified Attributes item.
* ``escrow``   Encrypted Attributes Sequence (0400,0500) over the ``mediasec.cms`` engine.
* ``files``    Part 10 streams in and out: ``DeidJob`` (a build stage calls
  ``DeidJob.deidentify_dataset``), ``reidentify``.
"""

from mediasec.deid.profile import OPTIONS

__all__ = ["DeidJob", "DeidFileResult", "ReidFileResult", "reidentify", "reidentify_dataset",
           "OPTIONS"]


def __getattr__(name: str):
    # ``files`` imports pydicom (~0.4 s): only when it is used, not for every build
    if name in __all__:
        from mediasec.deid import files
        return getattr(files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

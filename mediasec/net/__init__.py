"""DICOM networking at the edge (pynetdicom): TLS per PS3.15 Annex B (``tls``), the storage
SCU (``scu``: echo, send) and SCP (``scp``: receive). pynetdicom's exceptions and log-only
failures are translated into ``mediasec.errors.PeerError`` in one place (``_seam``)."""

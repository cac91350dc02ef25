"""CMS (RFC 5652) for Secure DICOM Files: streaming writer and reader.

* ``_ber``      TLV encoding helpers and a bounded pull reader over chunk streams.
* ``oids``      the object identifiers we use, by RFC name.
* ``keys``      ``Signer`` / ``KeyTransportRecipient`` / ``PasswordRecipient`` / ``Decrypter``.
* ``envelope``  EnvelopedData: RecipientInfos, content encryption, sizes.
* ``signed``    SignedData / DigestedData framing and verification.
* ``secure``    the Secure DICOM File: protect / open / inspect drivers.
"""

"""Formats: DICOM Part 10 scanning and writing, the Basic Directory codec, File IDs.

Pure code over ``BinaryIO``/bytes; pydicom is reached only through ``dicom._seam``.
"""

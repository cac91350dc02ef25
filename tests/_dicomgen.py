"""Synthetic DICOM instances for tests and benchmarks, written with pydicom.

Deterministic: UIDs derive from the given seed strings (2.25 UUID-based), so a test can
predict every value. ``write_instance(path, kind, ...)`` writes one file; ``ct_series``
writes a series; ``KINDS`` maps a short name to (SOP Class UID, expected leaf record type).
"""

from __future__ import annotations

import hashlib
import pathlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit)

__all__ = ["uid", "KINDS", "make_dataset", "write_instance", "ct_series", "ELE", "ILE", "DEFL",
           "BE", "JPEG"]

ELE, ILE, DEFL, BE, JPEG = (ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                            DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                            JPEGBaseline8Bit)


def uid(*parts) -> str:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


S = "1.2.840.10008.5.1.4.1.1."
KINDS = {
    "ct": (S + "2", "IMAGE"),
    "mr": (S + "4", "IMAGE"),
    "sc": (S + "7", "IMAGE"),
    "seg": (S + "66.4", "IMAGE"),
    "sr": (S + "88.33", "SR DOCUMENT"),
    "sr_basic": (S + "88.11", "SR DOCUMENT"),
    "kos": (S + "88.59", "KEY OBJECT DOC"),
    "gsps": (S + "11.1", "PRESENTATION"),
    "pdf": (S + "104.1", "ENCAP DOC"),
    "stl": (S + "104.3", "ENCAP DOC"),
    "ecg": (S + "9.1.1", "WAVEFORM"),
    "rtdose": (S + "481.2", "RT DOSE"),
    "rtstruct": (S + "481.3", "RT STRUCTURE SET"),
    "rtplan": (S + "481.5", "RT PLAN"),
    "rtrecord": (S + "481.4", "RT TREAT RECORD"),
    "rtrad": (S + "481.12", "RADIOTHERAPY"),
    "mrs": (S + "4.2", "SPECTROSCOPY"),
    "raw": (S + "66", "RAW DATA"),
    "reg": (S + "66.1", "REGISTRATION"),
    "fid": (S + "66.2", "FIDUCIAL"),
    "lenso": (S + "78.1", "MEASUREMENT"),
    "surface": (S + "66.5", "SURFACE"),
    "rwvm": (S + "67", "VALUE MAP"),
}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def make_dataset(kind: str, *, patient: str = "P1", study: str = "S1", series: str = "SE1",
                 number: int = 1, rows: int = 8, cols: int = 8, modality: str | None = None,
                 patient_name: str = "DOE^JANE", charset: str | None = None,
                 extra: dict | None = None) -> Dataset:
    sop_class, _ = KINDS[kind]
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid("inst", patient, study, series, kind, number)
    ds.StudyDate, ds.StudyTime = "20240131", "101500"
    ds.ContentDate, ds.ContentTime = "20240131", "101600"
    ds.AccessionNumber = "ACC" + study
    ds.Modality = modality or {"ct": "CT", "mr": "MR", "sc": "OT", "seg": "SEG", "sr": "SR",
                               "sr_basic": "SR", "kos": "KO", "gsps": "PR", "pdf": "DOC",
                               "stl": "M3D", "ecg": "ECG", "rtdose": "RTDOSE",
                               "rtstruct": "RTSTRUCT", "rtplan": "RTPLAN",
                               "rtrecord": "RTRECORD", "rtrad": "RTRAD", "mrs": "MR",
                               "raw": "OT", "reg": "REG", "fid": "FID", "lenso": "LEN",
                               "surface": "SEG", "rwvm": "RWV"}[kind]
    ds.StudyDescription = "Study " + study
    ds.PatientName = patient_name
    ds.PatientID = patient
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = uid("study", patient, study)
    ds.SeriesInstanceUID = uid("series", patient, study, series)
    ds.StudyID = study
    ds.SeriesNumber = int(hashlib.sha256(series.encode()).hexdigest(), 16) % 900 + 1
    ds.InstanceNumber = number
    ds.InstitutionName = "Test Hospital"
    if kind in ("ct", "mr", "sc", "seg"):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = uid("for", patient, study)
        ds.ImagePositionPatient = [0, 0, number]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 1 if kind == "ct" else 0
        if kind == "ct":
            ds.SmallestImagePixelValue = -1000   # US or SS: ambiguous in implicit VR
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = bytes((i * 7 + number) & 0xFF for i in range(rows * cols * 2))
    elif kind in ("sr", "sr_basic", "kos"):
        ds.CompletionFlag = "COMPLETE"
        ds.VerificationFlag = "UNVERIFIED"
        ds.ConceptNameCodeSequence = [_code("11528-7", "LN", "Radiology Report")]
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
        item.TextValue = "Nothing to report"
        ds.ContentSequence = [item]
        ds.ValueType = "CONTAINER"
        ds.ContinuityOfContent = "SEPARATE"
        if kind == "kos":
            ds.ConceptNameCodeSequence = [_code("113000", "DCM", "Of Interest")]
            del ds.CompletionFlag, ds.VerificationFlag
    elif kind == "gsps":
        ds.PresentationCreationDate, ds.PresentationCreationTime = "20240131", "101700"
        ds.ContentLabel = "GSPS1"
        ds.ContentDescription = "a presentation"
        ds.ContentCreatorName = "SMITH^J"
        ref = Dataset()
        ref.SeriesInstanceUID = uid("series", patient, study, "SE1")
        img = Dataset()
        img.ReferencedSOPClassUID = KINDS["ct"][0]
        img.ReferencedSOPInstanceUID = uid("inst", patient, study, "SE1", "ct", 1)
        ref.ReferencedImageSequence = [img]
        ds.ReferencedSeriesSequence = [ref]
    elif kind in ("pdf", "stl"):
        ds.DocumentTitle = "Report"
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf" if kind == "pdf" else "model/stl"
        ds.ConceptNameCodeSequence = []
        ds.EncapsulatedDocument = b"%PDF-1.4 test document body" + b"\0" * (number % 2)
    elif kind == "ecg":
        w = Dataset()
        w.WaveformOriginality = "ORIGINAL"
        w.NumberOfWaveformChannels = 1
        w.NumberOfWaveformSamples = 4
        w.SamplingFrequency = 500
        w.WaveformBitsAllocated = 16
        w.WaveformSampleInterpretation = "SS"
        w.WaveformData = b"\1\0\2\0\3\0\4\0"
        ds.WaveformSequence = [w]
    elif kind == "rtdose":
        ds.DoseSummationType = "PLAN"
        ds.DoseUnits, ds.DoseType = "GY", "PHYSICAL"
    elif kind == "rtstruct":
        ds.StructureSetLabel = "SS1"
        ds.StructureSetDate, ds.StructureSetTime = "20240131", "101800"
    elif kind == "rtplan":
        ds.RTPlanLabel = "PLAN1"
        ds.RTPlanDate, ds.RTPlanTime = "20240131", "101900"
    elif kind == "rtrecord":
        ds.TreatmentDate, ds.TreatmentTime = "20240131", "102000"
    elif kind == "rtrad":
        ds.UserContentLabel = "RS1"
        ds.ContentDescription = "radiation set"
        ds.ContentCreatorName = "SMITH^J"
    elif kind == "mrs":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "SPECTROSCOPY", "NONE"]
        ds.NumberOfFrames = 1
        ds.Rows, ds.Columns = 1, 1
        ds.DataPointRows, ds.DataPointColumns = 1, 4
        ev = Dataset()   # Image SOP Instance Reference Macro (flat), as in the MRS module
        ev.ReferencedSOPClassUID = KINDS["mr"][0]
        ev.ReferencedSOPInstanceUID = uid("inst", patient, study, "SE1", "mr", 1)
        ds.ReferencedImageEvidenceSequence = [ev]
    elif kind in ("reg", "fid", "surface", "rwvm"):
        ds.ContentLabel = kind.upper()
        ds.ContentDescription = "content"
        ds.ContentCreatorName = "SMITH^J"
    elif kind == "lenso":
        ds.ContentLabel = "LENS"
        ds.ContentDescription = ""
        ds.ContentCreatorName = ""
    if extra:
        for k, v in extra.items():
            if v is None:
                if k in ds:
                    delattr(ds, k)
            else:
                setattr(ds, k, v)
    return ds


def write_instance(path, kind: str = "ct", *, ts: str = ELE, preamble: bytes | None = None,
                   **kw) -> pathlib.Path:
    """Write one Part 10 file of ``kind`` at ``path`` in transfer syntax ``ts``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(kind, **kw)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.3.4.5"
    ds.file_meta = meta
    if ts == JPEG:
        # not a real JPEG stream: enough for header scanning and TS checks
        from pydicom.encaps import encapsulate
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9" + b"\0" * 12])
        ds["PixelData"].VR = "OB"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds["PixelData"].is_undefined_length = True
    ds.preamble = preamble or b"\0" * 128
    ds.save_as(path, enforce_file_format=True, little_endian=ts != BE,
               implicit_vr=ts == ILE)
    return path


def ct_series(folder, n: int, *, patient="P1", study="S1", series="SE1", ts=ELE, kind="ct",
              rows: int = 8, cols: int = 8, name=lambda i: f"img{i:05d}.dcm") -> list:
    folder = pathlib.Path(folder)
    return [write_instance(folder / name(i), kind, ts=ts, patient=patient, study=study,
                           series=series, number=i + 1, rows=rows, cols=cols)
            for i in range(n)]


# -- large instances, fast -----------------------------------------------------------------

IMAGE_CLASSES = {   # image kinds beyond KINDS: SOP Class UID, Modality
    "cr": (S + "1", "CR"),
    "dx": (S + "1.1", "DX"),
    "xa": (S + "12.1", "XA"),
    "ct": (KINDS["ct"][0], "CT"),
    "mr": (KINDS["mr"][0], "MR"),
}


def pixel_chunks(n: int, pool: bytes, salt: int, chunk: int = 1 << 20):
    """``n`` pseudo-random bytes as chunks cut from ``pool`` at offsets that depend on
    ``salt`` and the chunk number: no two files and no two chunks of a file alike, at
    memcpy speed (a 100 MiB object in well under a second)."""
    span = len(pool) - chunk
    assert span > 0
    k = done = 0
    while done < n:
        off = (salt * 1_000_003 + k * 65_537) % span
        piece = pool[off:off + min(chunk, n - done)]
        yield piece
        done += len(piece)
        k += 1


def write_image(path, kind: str, *, rows: int, cols: int, frames: int = 1, bits: int = 16,
                pool: bytes, salt: int = 0, pad_to: int | None = None, **kw) -> int:
    """Write a Part 10 image of ``kind`` (``IMAGE_CLASSES``: cr, dx, xa, ct, mr) with
    ``rows`` x ``cols`` x ``frames`` pixels of ``bits`` (8 or 16) bits, explicit VR little
    endian, streaming the Pixel Data from ``pool`` (see ``pixel_chunks``); returns its
    size. ``pad_to``: a private OB element pads the file to exactly that many bytes (even).
    ``kw`` goes to ``make_dataset`` (patient, study, series, number, extra, ...)."""
    import io
    import struct
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sop_class, modality = IMAGE_CLASSES[kind]
    ds = make_dataset("ct" if kind == "ct" else "mr", rows=1, cols=1, modality=modality, **kw)
    del ds.PixelData
    ds.SOPClassUID = sop_class
    number = kw.get("number", 1)
    ds.SOPInstanceUID = uid("inst", kw.get("patient", "P1"), kw.get("study", "S1"),
                            kw.get("series", "SE1"), kind, number)
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits - 4 if bits == 16 else 8, \
        (bits - 5 if bits == 16 else 7)
    ds.PixelRepresentation = 1 if kind == "ct" else 0
    if "SmallestImagePixelValue" in ds:
        del ds.SmallestImagePixelValue
    if kind in ("cr", "dx", "xa"):
        for k in ("ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
                  "SmallestImagePixelValue", "RescaleIntercept", "RescaleSlope"):
            if k in ds:
                delattr(ds, k)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE" if kind == "xa" else ""]
        if kind == "dx":
            ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ReferringPhysicianName = ""
        ds.Manufacturer = "mediasec tests"
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.PatientOrientation = ["L", "F"]
        ds.Laterality = ""
    if frames > 1 or kind == "xa":
        ds.NumberOfFrames = frames
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ELE
    meta.ImplementationClassUID = "1.2.3.4.5"
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    n = rows * cols * frames * (bits // 8)
    assert n % 2 == 0, "odd Pixel Data length"

    def encoded() -> bytes:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True, little_endian=True, implicit_vr=False)
        return buf.getvalue()

    if pad_to is not None:
        ds.add_new(0x00090010, "LO", "MEDIASEC PAD")
        ds.add_new(0x00091000, "OB", b"")
        k = pad_to - (len(encoded()) + 12 + n)
        if k < 0 or k % 2:
            raise ValueError(f"cannot pad to {pad_to} bytes ({k})")
        ds[0x00091000].value = bytes(k)
    head = encoded() + b"\xe0\x7f\x10\x00" + (b"OW" if bits == 16 else b"OB") + \
        b"\0\0" + struct.pack("<I", n)
    with open(path, "wb") as f:
        f.write(head)
        for piece in pixel_chunks(n, pool, salt):
            f.write(piece)
    return len(head) + n


def random_pool(seed: int = 0, size: int = 8 << 20) -> bytes:
    """The byte pool ``write_image`` cuts Pixel Data from (deterministic per seed)."""
    import random
    return random.Random(seed).randbytes(size)

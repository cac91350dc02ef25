"""The data element tags mediasec names, in one place, with their DICOM keywords.

A tag is an ``int`` ``0xGGGGEEEE``. The constants' names are the DICOM keywords in upper
snake case; ``KEYWORDS`` maps each tag to its keyword exactly as the standard's data
dictionary spells it (PS3.6), and ``tests/test_tags.py`` checks every one against
pydicom's dictionary. Modules name tags through here instead of spelling hex numbers.
"""

from __future__ import annotations

__all__ = ["KEYWORDS", "TAG", "tag_for", "keyword_for",
           "SPECIFIC_CHARACTER_SET", "SOP_CLASS_UID", "SOP_INSTANCE_UID", "STUDY_DATE",
           "STUDY_TIME", "MODALITY", "STUDY_DESCRIPTION", "PATIENT_NAME", "PATIENT_ID",
           "PATIENT_BIRTH_DATE", "STUDY_INSTANCE_UID", "SERIES_INSTANCE_UID", "STUDY_ID",
           "SERIES_NUMBER", "INSTANCE_NUMBER", "PIXEL_REPRESENTATION", "PIXEL_DATA",
           "FLOAT_PIXEL_DATA", "DOUBLE_FLOAT_PIXEL_DATA", "PIXEL_BULK",
           "FILESET_ID", "FIRST_ROOT", "LAST_ROOT", "CONSISTENCY", "RECORD_SEQUENCE", "NEXT",
           "IN_USE", "LOWER", "RECORD_TYPE", "PRIVATE_RECORD_UID", "REF_FILE_ID",
           "REF_SOP_CLASS", "REF_SOP_INSTANCE", "REF_TS"]

#: tag -> DICOM keyword (PS3.6)
KEYWORDS: dict[int, str] = {
    # SOP Common, General Study/Series, Patient
    0x00080005: "SpecificCharacterSet",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080020: "StudyDate",
    0x00080030: "StudyTime",
    0x00080060: "Modality",
    0x00081030: "StudyDescription",
    0x00100010: "PatientName",
    0x00100020: "PatientID",
    0x00100030: "PatientBirthDate",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00200010: "StudyID",
    0x00200011: "SeriesNumber",
    0x00200013: "InstanceNumber",
    0x00280103: "PixelRepresentation",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
    0x7FE00010: "PixelData",
    # Basic Directory (PS3.3 F.3, F.5)
    0x00041130: "FileSetID",
    0x00041200: "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity",
    0x00041202: "OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity",
    0x00041212: "FileSetConsistencyFlag",
    0x00041220: "DirectoryRecordSequence",
    0x00041400: "OffsetOfTheNextDirectoryRecord",
    0x00041410: "RecordInUseFlag",
    0x00041420: "OffsetOfReferencedLowerLevelDirectoryEntity",
    0x00041430: "DirectoryRecordType",
    0x00041432: "PrivateRecordUID",
    0x00041500: "ReferencedFileID",
    0x00041510: "ReferencedSOPClassUIDInFile",
    0x00041511: "ReferencedSOPInstanceUIDInFile",
    0x00041512: "ReferencedTransferSyntaxUIDInFile",
}
#: keyword -> tag
TAG: dict[str, int] = {k: t for t, k in KEYWORDS.items()}


def tag_for(keyword: str) -> int:
    return TAG[keyword]


def keyword_for(tag: int) -> str | None:
    return KEYWORDS.get(tag)


SPECIFIC_CHARACTER_SET = TAG["SpecificCharacterSet"]
SOP_CLASS_UID = TAG["SOPClassUID"]
SOP_INSTANCE_UID = TAG["SOPInstanceUID"]
STUDY_DATE = TAG["StudyDate"]
STUDY_TIME = TAG["StudyTime"]
MODALITY = TAG["Modality"]
STUDY_DESCRIPTION = TAG["StudyDescription"]
PATIENT_NAME = TAG["PatientName"]
PATIENT_ID = TAG["PatientID"]
PATIENT_BIRTH_DATE = TAG["PatientBirthDate"]
STUDY_INSTANCE_UID = TAG["StudyInstanceUID"]
SERIES_INSTANCE_UID = TAG["SeriesInstanceUID"]
STUDY_ID = TAG["StudyID"]
SERIES_NUMBER = TAG["SeriesNumber"]
INSTANCE_NUMBER = TAG["InstanceNumber"]
PIXEL_REPRESENTATION = TAG["PixelRepresentation"]
PIXEL_DATA = TAG["PixelData"]
FLOAT_PIXEL_DATA = TAG["FloatPixelData"]
DOUBLE_FLOAT_PIXEL_DATA = TAG["DoubleFloatPixelData"]
#: the bulk pixel elements (a header scan stops at them; rewriters copy them raw)
PIXEL_BULK = frozenset({FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA, PIXEL_DATA})
FILESET_ID = TAG["FileSetID"]
FIRST_ROOT = TAG["OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"]
LAST_ROOT = TAG["OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity"]
CONSISTENCY = TAG["FileSetConsistencyFlag"]
RECORD_SEQUENCE = TAG["DirectoryRecordSequence"]
NEXT = TAG["OffsetOfTheNextDirectoryRecord"]
IN_USE = TAG["RecordInUseFlag"]
LOWER = TAG["OffsetOfReferencedLowerLevelDirectoryEntity"]
RECORD_TYPE = TAG["DirectoryRecordType"]
PRIVATE_RECORD_UID = TAG["PrivateRecordUID"]
REF_FILE_ID = TAG["ReferencedFileID"]
REF_SOP_CLASS = TAG["ReferencedSOPClassUIDInFile"]
REF_SOP_INSTANCE = TAG["ReferencedSOPInstanceUIDInFile"]
REF_TS = TAG["ReferencedTransferSyntaxUIDInFile"]

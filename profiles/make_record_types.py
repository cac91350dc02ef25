"""Regenerate ``record_types.json`` from the authored tables below (maintainers only).

The tables are transcribed from DICOM PS3.3 2024c Annex F (F.4-1 hierarchy, F.5 keys) and
PS3.4 Annex B (B.5 Standard SOP Classes); keyword -> tag/VR is resolved with pydicom's data
dictionary at authoring time, so the shipped JSON is self-contained and the runtime needs no
dictionary lookups. Run: ``python profiles/make_record_types.py`` and review the diff.
"""

from __future__ import annotations

import json
import pathlib

from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, tag_for_keyword

HERE = pathlib.Path(__file__).resolve().parent

# ---- PS3.3 F.5: keys per record type: (keyword, type) ------------------------------------
CONTENT_ID = [("InstanceNumber", "1"), ("ContentLabel", "1"), ("ContentDescription", "2"),
              ("ContentCreatorName", "2")]
CONTENT_DT = [("ContentDate", "1"), ("ContentTime", "1")]
KEYS = {
    "PATIENT": [("PatientName", "2"), ("PatientID", "1")],
    "STUDY": [("StudyDate", "1"), ("StudyTime", "1"), ("StudyDescription", "2"),
              ("StudyInstanceUID", "1"), ("StudyID", "1"), ("AccessionNumber", "2")],
    "SERIES": [("Modality", "1"), ("SeriesInstanceUID", "1"), ("SeriesNumber", "1")],
    "IMAGE": [("InstanceNumber", "1")],
    "RT DOSE": [("InstanceNumber", "1"), ("DoseSummationType", "1")],
    "RT STRUCTURE SET": [("InstanceNumber", "1"), ("StructureSetLabel", "1"),
                         ("StructureSetDate", "2"), ("StructureSetTime", "2")],
    "RT PLAN": [("InstanceNumber", "1"), ("RTPlanLabel", "1"), ("RTPlanDate", "2"),
                ("RTPlanTime", "2")],
    "RT TREAT RECORD": [("InstanceNumber", "1"), ("TreatmentDate", "2"), ("TreatmentTime", "2")],
    "PRESENTATION": [("PresentationCreationDate", "1"), ("PresentationCreationTime", "1"),
                     *CONTENT_ID, ("ReferencedSeriesSequence", "1C"), ("BlendingSequence", "1C")],
    "WAVEFORM": [("InstanceNumber", "1"), *CONTENT_DT],
    "SR DOCUMENT": [("InstanceNumber", "1"), ("CompletionFlag", "1"), ("VerificationFlag", "1"),
                    *CONTENT_DT, ("VerificationDateTime", "1C"),
                    ("ConceptNameCodeSequence", "1")],
    "KEY OBJECT DOC": [("InstanceNumber", "1"), *CONTENT_DT, ("ConceptNameCodeSequence", "1")],
    "SPECTROSCOPY": [("ImageType", "1"), *CONTENT_DT, ("InstanceNumber", "1"),
                     ("ReferencedImageEvidenceSequence", "1C"), ("NumberOfFrames", "1"),
                     ("Rows", "1"), ("Columns", "1"), ("DataPointRows", "1"),
                     ("DataPointColumns", "1")],
    "RAW DATA": [*CONTENT_DT, ("InstanceNumber", "2")],
    "REGISTRATION": [*CONTENT_DT, *CONTENT_ID],
    "FIDUCIAL": [*CONTENT_DT, *CONTENT_ID],
    "ENCAP DOC": [("ContentDate", "2"), ("ContentTime", "2"), ("InstanceNumber", "1"),
                  ("DocumentTitle", "2"), ("HL7InstanceIdentifier", "1C"),
                  ("ConceptNameCodeSequence", "2"), ("MIMETypeOfEncapsulatedDocument", "1")],
    "VALUE MAP": [*CONTENT_DT, *CONTENT_ID],
    "STEREOMETRIC": [],
    "PLAN": [],
    "MEASUREMENT": [*CONTENT_DT, ("InstanceNumber", "1"), ("ContentLabel", "1C"),
                    ("ContentDescription", "2"), ("ContentCreatorName", "2")],
    "SURFACE": [*CONTENT_DT, *CONTENT_ID],
    "SURFACE SCAN": [*CONTENT_DT, *CONTENT_ID],
    "TRACT": [*CONTENT_DT, *CONTENT_ID],
    "ASSESSMENT": [("InstanceNumber", "1"), ("ContentDate", "1C"), ("ContentTime", "1C")],
    "RADIOTHERAPY": [("InstanceNumber", "1"), ("UserContentLabel", "1C"),
                     ("UserContentLongLabel", "1C"), ("ContentDescription", "2"),
                     ("ContentCreatorName", "2")],
    "ANNOTATION": [("InstanceNumber", "1"), ("ContentLabel", "1"), ("ContentDescription", "2"),
                   ("ContentCreatorName", "2"), ("ContentDate", "1C"), ("ContentTime", "1C")],
    "HANGING PROTOCOL": [("HangingProtocolName", "1"), ("HangingProtocolDescription", "1"),
                         ("HangingProtocolLevel", "1"), ("HangingProtocolCreator", "1"),
                         ("HangingProtocolCreationDateTime", "1"),
                         ("HangingProtocolDefinitionSequence", "1"),
                         ("NumberOfPriorsReferenced", "1"),
                         ("HangingProtocolUserIdentificationCodeSequence", "2")],
    "PALETTE": [("ContentLabel", "1")],
    "IMPLANT": [("Manufacturer", "1"), ("ImplantName", "1"), ("ImplantSize", "1C"),
                ("ImplantPartNumber", "1")],
    "IMPLANT ASSY": [("ImplantAssemblyTemplateName", "1"), ("Manufacturer", "1"),
                     ("ProcedureTypeCodeSequence", "1")],
    "IMPLANT GROUP": [("ImplantTemplateGroupName", "1"), ("ImplantTemplateGroupIssuer", "1")],
}
ROOT_TYPES = ["PATIENT", "HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY",
              "IMPLANT GROUP"]
LEAF_TYPES = [t for t in KEYS if t not in ROOT_TYPES and t not in ("STUDY", "SERIES")]

# ---- fill-in values for --fill-missing, by keyword (consistent, obviously synthetic) --------
FILL = {"Modality": "OT", "CompletionFlag": "PARTIAL", "VerificationFlag": "UNVERIFIED",
        "ContentLabel": "UNLABELED", "StructureSetLabel": "UNLABELED", "RTPlanLabel": "UNLABELED",
        "DoseSummationType": "PLAN", "MIMETypeOfEncapsulatedDocument": "application/octet-stream"}

# ---- PS3.4 B.5 storage SOP classes -> leaf record type ------------------------------------
ROOT_SOP = {"1.2.840.10008.5.1.4.38.1": "HANGING PROTOCOL", "1.2.840.10008.5.1.4.39.1": "PALETTE",
            "1.2.840.10008.5.1.4.43.1": "IMPLANT", "1.2.840.10008.5.1.4.44.1": "IMPLANT ASSY",
            "1.2.840.10008.5.1.4.45.1": "IMPLANT GROUP"}
P = "1.2.840.10008.5.1.4.1.1."
EXPLICIT = {
    P + "481.2": "RT DOSE", P + "481.3": "RT STRUCTURE SET", P + "481.5": "RT PLAN",
    P + "481.8": "RT PLAN", P + "481.4": "RT TREAT RECORD", P + "481.6": "RT TREAT RECORD",
    P + "481.7": "RT TREAT RECORD", P + "481.9": "RT TREAT RECORD", P + "481.1": "IMAGE",
    P + "481.23": "IMAGE", P + "481.24": "IMAGE",
    "1.2.840.10008.5.1.4.34.7": "PLAN", "1.2.840.10008.5.1.4.34.10": "PLAN",
    P + "4.2": "SPECTROSCOPY", P + "66": "RAW DATA", P + "66.1": "REGISTRATION",
    P + "66.3": "REGISTRATION", P + "66.2": "FIDUCIAL", P + "66.5": "SURFACE", P + "66.6": "TRACT",
    P + "67": "VALUE MAP", P + "68.1": "SURFACE SCAN", P + "68.2": "SURFACE SCAN",
    P + "77.1.5.3": "STEREOMETRIC", P + "88.59": "KEY OBJECT DOC", P + "90.1": "ASSESSMENT",
    P + "91.1": "ANNOTATION", P + "131": "PRESENTATION", P + "78.6": "SR DOCUMENT",
    P + "79.1": "SR DOCUMENT", P + "78.8": "MEASUREMENT", P + "80.1": "MEASUREMENT",
    P + "66.4": "IMAGE", P + "30": "IMAGE", P + "81.1": "IMAGE", P + "82.1": "IMAGE",
    P + "77.1.5.8": "IMAGE", P + "6.2": "IMAGE",
}
PREFIX = [(P + "481.", "RADIOTHERAPY"), (P + "104.", "ENCAP DOC"), (P + "9.", "WAVEFORM"),
          (P + "11.", "PRESENTATION"), (P + "88.", "SR DOCUMENT"), (P + "78.", "MEASUREMENT")]
# Not patient media, or no record type in F.4-1: left out on purpose (see README).
EXCLUDED_PREFIX = (P + "501.", P + "601.", P + "200.", P + "201.")


def _key(keyword: str, typ: str) -> dict:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return {"tag": f"{tag:08X}", "keyword": keyword, "vr": dictionary_VR(tag).split(" ")[0],
            "type": typ}


def main() -> None:
    sop = {}
    for uid, (name, kind, _info, retired, *_rest) in sorted(UID_dictionary.items()):
        if kind != "SOP Class" or retired or uid.startswith(EXCLUDED_PREFIX):
            continue
        if uid in ROOT_SOP:
            rt = ROOT_SOP[uid]
        elif uid in EXPLICIT:
            rt = EXPLICIT[uid]
        elif not (name.endswith("Storage") or "Storage -" in name) or uid == "1.2.840.10008.1.3.10":
            continue
        else:
            rt = next((t for p, t in PREFIX if uid.startswith(p)), None)
            if rt is None:
                if "Image" not in name:
                    raise SystemExit(f"unclassified storage class {uid} {name}")
                rt = "IMAGE"
        sop[uid] = {"record_type": rt, "name": name}
    out = {
        "provenance": "DICOM PS3.3 2024c Annex F (Table F.4-1, F.5.x keys); PS3.4 2024c "
                      "Annex B.5; generated by profiles/make_record_types.py",
        "hierarchy": {"ROOT": ROOT_TYPES, "PATIENT": ["STUDY"], "STUDY": ["SERIES"],
                      "SERIES": LEAF_TYPES},
        "record_types": {rt: {"level": ("root" if rt in ROOT_TYPES else
                                        "study" if rt == "STUDY" else
                                        "series" if rt == "SERIES" else "leaf"),
                              "keys": [_key(k, t) for k, t in keys]}
                         for rt, keys in KEYS.items()},
        "fill_values": FILL,
        "sop_classes": sop,
    }
    text = json.dumps(out, indent=1, sort_keys=False) + "\n"
    (HERE / "record_types.json").write_text(text)
    print(f"{len(sop)} SOP classes, {len(KEYS)} record types")


if __name__ == "__main__":
    main()

"""Per-file stages (``mediasec.media.stages``): exact sizes before any byte, the declared
order, a plug-in stage in an empty slot (as dataset signing and de-identification will
be), and a job planned once across spanned media."""

from __future__ import annotations

import hashlib
import json

import pydicom
import pytest

from _cms import open_bytes, pwri
from _dicomgen import ct_series
from conftest import DICOM, run_cli
from mediasec.dicom.scan import scan_file
from mediasec.errors import InternalError
from mediasec.media import stages as st
from mediasec.media.fileset import wanted_tags
from mediasec._data import media_profile

PROFILE = media_profile("STD-GEN-CD")


def _opener(path):
    return open(path, "rb")


def _item(name: str) -> st.FileItem:
    path = str(DICOM / name)
    size = (DICOM / name).stat().st_size
    with open(path, "rb") as f:
        scanned = scan_file(f, size, source=path, tags=wanted_tags(PROFILE))
    return st.FileItem("instance", path, scanned, size=size)


def _run(pipe: st.FilePipeline) -> bytes:
    data = b"".join(bytes(c) for c in pipe.chunks())
    assert len(data) == pipe.size                          # the size was exact, up front
    assert pipe.sha256 == hashlib.sha256(data).hexdigest()  # the manifest's hash stage
    return data


@pytest.mark.parametrize("name,kind", [("ct1.dcm", "copy"), ("ct3_ile.dcm", "convert-vr"),
                                       ("mr2_deflate.dcm", "inflate")])
@pytest.mark.parametrize("protect", [False, True], ids=["plain", "secure"])
def test_each_pipeline_makes_exactly_its_planned_size(name, kind, protect):
    recipient = pwri()
    stages = st.FileStages(read=st.ReadStage(_opener),
                           protect=st.ProtectStage.for_job(recipients=[recipient])
                           if protect else None)
    plain = _run(st.FileStages(read=st.ReadStage(_opener)).pipeline(_item(name)))
    pipe = stages.pipeline(_item(name))
    assert pipe.kind == ("secure" if protect else kind)
    assert pipe.stage_names == ("read", *(("transcode",) if kind != "copy" else ()),
                                *(("protect",) if protect else ()), "hash")
    out = _run(pipe)
    if protect:
        assert open_bytes(out)[0] == plain     # opens (openssl interop: test_build_secure)
    else:
        assert out == plain
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(plain))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert pipe.plain_size == len(plain)


class _Trailer:
    """A stand-in for the dataset signature stage: appends a fixed-size element, so its
    size is known from the input size alone, and records the order it ran in."""

    def __init__(self, name: str, data: bytes, log: list):
        self.name, self.data, self.log = name, data, log

    def prepare(self, item, in_size):
        stage = self

        class Step:
            size = in_size + len(stage.data)

            def run(self, upstream):
                stage.log.append(stage.name)
                yield from upstream.chunks()
                yield stage.data
        return Step()


def test_a_stage_plugs_into_its_slot_in_the_declared_order():
    log = []
    # (7FFF,FF00) UN, 4 bytes: a private-looking trailing element, well-formed DICOM
    element = b"\xff\x7f\x00\xffUN\x00\x00\x04\x00\x00\x00SIG!"
    stages = st.FileStages(read=st.ReadStage(_opener),
                           sign_dataset=_Trailer("sign_dataset", element, log),
                           deidentify=_Trailer("deidentify", b"", log),
                           protect=st.ProtectStage.for_job(recipients=[pwri()]))
    pipe = stages.pipeline(_item("ct3_ile.dcm"))
    assert pipe.stage_names == ("read", "transcode", "deidentify", "sign_dataset", "protect",
                                "hash")
    plain = open_bytes(_run(pipe))[0]
    assert log == ["sign_dataset", "deidentify"]   # pulled from the end: innermost runs last
    assert plain.endswith(element) and pipe.plain_size == len(plain)
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(plain))
    assert ds[0x7FFF, 0xFF00].value == b"SIG!"


def test_a_step_off_its_planned_size_is_an_internal_error():
    class Liar(_Trailer):
        def prepare(self, item, in_size):
            step = super().prepare(item, in_size)
            step.size -= 1
            return step
    stages = st.FileStages(read=st.ReadStage(_opener),
                           sign_dataset=Liar("sign_dataset", b"0123", []))
    with pytest.raises(InternalError, match="more than the planned"):
        _run(stages.pipeline(_item("ct1.dcm")))


def test_spanning_prepares_each_file_once(tmp_path, monkeypatch):
    """A spanned secure job: one protect step (one content key) per file and per DICOMDIR,
    not a second one per medium."""
    src = tmp_path / "in"
    for s in range(3):
        ct_series(src / f"s{s}", 4, study=f"ST{s}", series=f"SE{s}", rows=256, cols=256)
    calls = []
    real = st.ProtectStage.prepare
    monkeypatch.setattr(st.ProtectStage, "prepare",
                        lambda self, item, n: calls.append(item.role) or real(self, item, n))
    res = run_cli("build", src, "-o", tmp_path / "job.iso", "--password-env", "PW",
                  "--span", "--capacity", str(1_100_000), "--json", tmp_path / "r.json",
                  env={"PW": "a long enough password"})
    assert res.code == 0, res
    images = json.loads((tmp_path / "r.json").read_text())["images"]
    assert len(images) >= 2
    # the whole job's DICOMDIR is planned once for the sizes, then each medium's own
    assert calls.count("instance") == 12 and calls.count("dicomdir") == 1 + len(images)

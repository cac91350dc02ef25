"""Issue 11: an input rewritten while ``build`` runs - at the same size, its mtime put
back - is detected (``INPUT_CHANGED``, exit 2), and nothing is left at the target: the
DICOMDIR and the manifest would describe other bytes than the file on the medium."""

from __future__ import annotations

import os

import pytest

import _dicomgen as g
import mediasec
from mediasec.errors import InputError
from mediasec.io.folder import WatchedInputs


def _sneaky_rewrite(path) -> None:
    """Same size, one pixel byte different, the modification time put back."""
    st = os.stat(path)
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(path) == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("output", ["OUT", "out.iso"])
def test_input_rewritten_after_the_scan(tmp_path, output):
    files = g.ct_series(tmp_path / "pile", 3)
    seen = []

    def on_progress(ev):
        seen.append(ev["event"])
        if ev["event"] == "scan" and ev["done_files"] == ev["total_files"]:
            _sneaky_rewrite(files[1])   # scanned already, not yet written
    with pytest.raises(InputError) as err:
        mediasec.build(mediasec.BuildRequest([tmp_path / "pile"], tmp_path / output,
                                             workers=1), on_progress=on_progress)
    assert err.value.code == "INPUT_CHANGED" and err.value.path == str(files[1])
    assert "scan" in seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pile"]   # nothing, no partial


def test_unchanged_inputs_build(tmp_path):
    g.ct_series(tmp_path / "pile", 2)
    res = mediasec.build(mediasec.BuildRequest([tmp_path / "pile"], tmp_path / "OUT",
                                               workers=1))
    assert not res.to_dict()["outcome"] == "failed" and (tmp_path / "OUT/DICOMDIR").exists()


def test_changed_while_open(tmp_path):
    path = tmp_path / "a.dcm"
    g.write_instance(path, "ct")
    watched = WatchedInputs()
    watched.collect([path])
    with pytest.raises(InputError) as err:
        with watched.open(str(path)) as f:
            f.read(10)
            _sneaky_rewrite(path)
    assert err.value.code == "INPUT_CHANGED"
    # and a later open of the same path is refused too
    with pytest.raises(InputError):
        watched.open(str(path))


def test_changed_between_collect_and_first_open(tmp_path):
    """The identity pinned at collection (the stat the size came from) is what the first
    open compares against: a rewrite in between is caught, not taken as the baseline."""
    path = tmp_path / "a.dcm"
    g.write_instance(path, "ct")
    watched = WatchedInputs()
    [(p, size)] = watched.collect([tmp_path])
    assert p == str(path) and size == os.path.getsize(path)
    _sneaky_rewrite(path)
    with pytest.raises(InputError) as err:
        watched.open(p)
    assert err.value.code == "INPUT_CHANGED" and err.value.path == p

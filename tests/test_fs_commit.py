"""AtomicOutput.commit: a new target is linked straight to its name; an existing one is
replaced; either way only the complete file ever carries the name, with the mode asked
for, and nothing else is left in the folder."""

from __future__ import annotations

import os
import stat

import pytest

from mediasec.io.fs import AtomicOutput


@pytest.mark.parametrize("exists", [False, True])
def test_commit_new_and_existing_targets(tmp_path, exists):
    target = tmp_path / "out.dcm"
    if exists:
        target.write_bytes(b"old")
    out = AtomicOutput(target, mode=0o640)
    with out as f:
        f.write(b"new " * 1000)
        assert target.exists() == exists           # nothing named before the commit
        if exists:
            assert target.read_bytes() == b"old"
        out.commit()
    assert target.read_bytes() == b"new " * 1000
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dcm"]


def test_failure_before_commit_names_nothing(tmp_path):
    target = tmp_path / "out.dcm"
    with pytest.raises(RuntimeError):
        with AtomicOutput(target) as f:
            f.write(b"partial")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []

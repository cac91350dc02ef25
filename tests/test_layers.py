"""Layer guard (ARCHITECTURE.md section 2): imports point down, absolute only, and below the
edge no OS modules, edge libraries or ``open()`` calls (the formats and the domain take
``BinaryIO``/bytes and callables)."""

import ast
import pathlib

# As in ARCHITECTURE.md, except that inside the foundation ``errors`` sits below the rest
# (policy.py and _data.py raise our errors): with all at 0 the check would forbid that.
LAYER = dict(errors=0, policy=0.5, report=0.5, ports=0.5, _stream=0.5, _data=0.5, _job=0.5,
             cms=1, pki=1, dicom=1, media=2, sign=2, deid=2, io=3, net=3, api=3, cli=3)
# ``api`` is the edge's composition root (the Python API): it wires io (and later net) to
# the domain; the command line calls it.
SIDEWAYS = {("cms", "pki"), ("media", "sign"), ("media", "deid"), ("net", "io"),
            ("cli", "io"), ("cli", "net"), ("api", "io"), ("api", "net"), ("cli", "api")}
EDGE_ONLY = {"os", "sys", "socket", "subprocess", "tempfile", "shutil", "getpass",
             "pycdlib", "pynetdicom", "click", "rich"}
ROOT = pathlib.Path(__file__).resolve().parents[1] / "mediasec"


def _modules():
    paths = sorted(ROOT.rglob("*.py"))
    assert paths, ROOT
    for path in paths:
        here = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if here.startswith("__"):
            continue
        yield path, here, ast.parse(path.read_text())


def test_every_module_has_a_layer():
    for path, here, _ in _modules():
        assert here in LAYER, f"{path}: {here} is not in the LAYER map"


def test_imports_point_down():
    problems = []
    for path, here, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for top, _, rest in (n.partition(".") for n in names):
                if top == "mediasec":
                    there = rest.split(".")[0]
                    if there == "__version__":
                        continue
                    if not (there == here or LAYER[there] < LAYER[here]
                            or (here, there) in SIDEWAYS):
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                        f"{here} -> {there}")
                elif LAYER[here] < 3 and top in EDGE_ONLY:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {top} is for "
                                    "the edge")
    assert not problems, "\n".join(problems)


def test_no_open_below_the_edge():
    problems = [f"{path.relative_to(ROOT)}:{node.lineno}: open() below the edge"
                for path, here, tree in _modules() if LAYER[here] < 3
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "open"]
    assert not problems, "\n".join(problems)


def test_the_guard_catches_a_violation(tmp_path):
    """The check itself can fail: an edge import in a formats module is flagged."""
    bad = ast.parse("import subprocess\nfrom mediasec.cli import main\n")
    found = []
    for node in ast.walk(bad):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in EDGE_ONLY]
        elif isinstance(node, ast.ImportFrom) and node.module.startswith("mediasec."):
            there = node.module.split(".")[1]
            if LAYER[there] >= LAYER["dicom"] and there != "dicom":
                found.append(node.module)
    assert found == ["subprocess", "mediasec.cli"]

"""Layer guard (ARCHITECTURE.md section 2): imports point down, absolute only, and below the
edge no OS, process or edge-library modules, no dynamic imports and no ``open()`` calls (the
formats and the domain take ``BinaryIO``/bytes and callables).

``layer_problems`` is the one guard: the suite runs it over every module of the package,
and the self-test runs the very same function over small modules made to break each rule.
"""

from __future__ import annotations

import ast
import pathlib

# As in ARCHITECTURE.md, except that inside the foundation ``errors`` sits below the rest
# (policy.py and _data.py raise our errors): with all at 0 the check would forbid that.
# ``api`` is the edge's composition root (the Python API), and the package's ``__init__``
# (its lazy front door) and ``__main__`` belong to the edge too.
LAYER = dict(errors=0, policy=0.5, report=0.5, ports=0.5, _stream=0.5, _data=0.5, _job=0.5,
             cms=1, pki=1, dicom=1, media=2, sign=2, deid=2, io=3, net=3, api=3, cli=3,
             __init__=3, __main__=3)
EDGE = 3
SIDEWAYS = {("cms", "pki"), ("media", "sign"), ("media", "deid"), ("net", "io"),
            ("cli", "io"), ("cli", "net"), ("api", "io"), ("api", "net"), ("cli", "api"),
            ("__init__", "api"), ("__main__", "cli")}
#: modules for the edge only: the OS, processes, the terminal, edge libraries
EDGE_ONLY = {"os", "sys", "socket", "subprocess", "tempfile", "shutil", "getpass", "signal",
             "multiprocessing", "concurrent", "ctypes", "mmap", "pty", "resource", "select",
             "selectors", "fcntl", "pathlib", "glob", "importlib", "runpy", "pkgutil",
             "pycdlib", "pynetdicom", "click", "rich"}
#: the sanctioned exceptions: package data (profiles/) is read through importlib.resources
#: (or, in a source tree, next to the package), in the one loader of profiles
ALLOWED = {("_data", "importlib.resources"), ("_data", "pathlib")}
#: builtins that reach the OS or run code at run time (and any use of ``__import__``)
EDGE_CALLS = {"open", "exec", "eval", "compile", "input", "breakpoint", "print"}
ROOT = pathlib.Path(__file__).resolve().parents[1] / "mediasec"


def layer_problems(tree: ast.AST, here: str, where: str) -> list[str]:
    """Every breach of the layer rules in the module ``tree`` of layer ``here``."""
    problems = []
    below_edge = LAYER[here] < EDGE
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(f"{where}:{node.lineno}: relative import")
                continue
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in EDGE_CALLS and below_edge):
            problems.append(f"{where}:{node.lineno}: {node.func.id}() below the edge")
            continue
        elif (isinstance(node, ast.Name) and node.id == "__import__" and below_edge
              and isinstance(node.ctx, ast.Load)):
            problems.append(f"{where}:{node.lineno}: __import__ below the edge")
            continue
        else:
            continue
        for name in names:
            top, _, rest = name.partition(".")
            if top == "mediasec":
                there = rest.split(".")[0]
                if there == "__version__":
                    continue
                if there not in LAYER:
                    problems.append(f"{where}:{node.lineno}: {there} has no layer")
                elif not (there == here or LAYER[there] < LAYER[here]
                          or (here, there) in SIDEWAYS):
                    problems.append(f"{where}:{node.lineno}: {here} -> {there} (upward)")
            elif below_edge and top in EDGE_ONLY and not any(
                    here == h and (name == a or name.startswith(a + "."))
                    for h, a in ALLOWED):
                problems.append(f"{where}:{node.lineno}: {top} is for the edge")
    return problems


def _modules():
    paths = sorted(ROOT.rglob("*.py"))
    assert paths, ROOT
    for path in paths:
        here = path.relative_to(ROOT).parts[0].removesuffix(".py")
        yield path, here, ast.parse(path.read_text())


def test_every_module_has_a_layer():
    for path, here, _ in _modules():
        assert here in LAYER, f"{path}: {here} is not in the LAYER map"


def test_the_package_keeps_its_layers():
    problems = []
    for path, here, tree in _modules():
        problems += layer_problems(tree, here, str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


def _check(source: str, here: str = "dicom") -> list[str]:
    return layer_problems(ast.parse(source), here, f"{here}/made_up.py")


def test_the_guard_catches_each_kind_of_breach():
    """The guard the suite runs fails on each rule, one made-up formats module each."""
    assert _check("from mediasec.dicom.scan import scan_file\n"
                  "from mediasec.errors import InputError\nimport hashlib\n") == []
    # an upward import (formats -> domain, formats -> edge)
    assert _check("from mediasec.media.plan import plan_medium\n") == [
        "dicom/made_up.py:1: dicom -> media (upward)"]
    assert _check("import mediasec.cli.main\n") == ["dicom/made_up.py:1: dicom -> cli (upward)"]
    # a relative import
    assert _check("from . import scan\n") == ["dicom/made_up.py:1: relative import"]
    # dynamic imports
    assert _check("import importlib\nm = importlib.import_module('mediasec.io.fs')\n") == [
        "dicom/made_up.py:1: importlib is for the edge"]
    assert _check("from importlib import import_module\n") == [
        "dicom/made_up.py:1: importlib is for the edge"]
    assert _check("fs = __import__('mediasec.io.fs')\n") == [
        "dicom/made_up.py:1: __import__ below the edge"]
    assert _check("imp = __import__\n") == ["dicom/made_up.py:1: __import__ below the edge"]
    # OS and process use
    for mod in ("os", "subprocess", "multiprocessing", "socket", "shutil"):
        assert _check(f"import {mod}\n") == [f"dicom/made_up.py:1: {mod} is for the edge"]
    assert _check("from os import path\n") == ["dicom/made_up.py:1: os is for the edge"]
    assert _check("from concurrent.futures import ProcessPoolExecutor\n") == [
        "dicom/made_up.py:1: concurrent is for the edge"]
    assert _check("with open('x', 'rb') as f:\n    pass\n") == [
        "dicom/made_up.py:1: open() below the edge"]
    assert _check("exec('import os')\n") == ["dicom/made_up.py:1: exec() below the edge"]
    # the same code is fine at the edge, and importlib.resources only in the data loader
    assert _check("import os\nimport importlib\nopen('x')\n", here="io") == []
    assert _check("from importlib import resources\n", here="_data") == []
    assert _check("from importlib import resources\n", here="media") == [
        "media/made_up.py:1: importlib is for the edge"]

"""constraints.txt pins every package mefnet pulls in, at the version that is installed.

The README's figures are what the code gives with the versions of constraints.txt
(`make install` installs with `pip install -c constraints.txt`); a dependency that is not
pinned there, or installed at another version, may move them (opencv-contrib's TV-L1 flow
did once). The dependency closure is walked from mefnet's own metadata with the extras
`make install` asks for.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what `make install` installs (-e '.[dev,face,onnx]'), and `make docs` the docs extra; an extra
# that is not installed is skipped
EXTRAS = ("dev", "face", "onnx", "docs")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        assert m, f"constraints.txt line {n}: expected 'name==version', got {line!r}"
        name = _canonical(m.group(1))
        assert name not in pins, f"constraints.txt line {n}: {m.group(1)} pinned twice"
        pins[name] = m.group(2)
    return pins


def test_constraints_file_is_well_formed_and_pins_torch_and_opencv():
    pins = _pins()
    assert pins["torch"] == "2.13.0"  # the local CPU build is found as plain 2.13.0
    assert "opencv-contrib-python-headless" in pins
    assert "mefnet" not in pins  # the editable project itself is not a constraint


def _closure() -> dict[str, str]:
    """{canonical name: installed version} of mefnet's dependencies with EXTRAS, recursively."""
    requirements = pytest.importorskip("packaging.requirements")
    try:
        mefnet = metadata.distribution("mefnet")
    except metadata.PackageNotFoundError:
        pytest.skip("mefnet is not installed in this environment (make install installs it)")
    found: dict[str, str] = {}
    todo = [(req, extra) for req in (mefnet.requires or []) for extra in ("", *EXTRAS)]
    while todo:
        text, extra = todo.pop()
        req = requirements.Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = _canonical(req.name)
        if name in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            if req.marker is None or "extra" not in str(req.marker):
                pytest.fail(f"{req.name} (required as {text!r}) is not installed")
            continue
        found[name] = dist.version
        todo += [(sub, e) for sub in (dist.requires or []) for e in ("", *req.extras)]
    return found


def test_every_installed_dependency_is_pinned_at_its_installed_version():
    pins = _pins()
    closure = _closure()
    assert "torch" in closure and "lightning" in closure and "pytest" in closure
    unpinned = sorted(n for n in closure if n not in pins)
    assert not unpinned, f"constraints.txt does not pin: {unpinned} (add them with their versions)"
    other = {n: (pins[n], v) for n, v in closure.items() if pins[n].split("+")[0] != v.split("+")[0]}
    assert not other, f"constraints.txt pins another version than is installed (pin, installed): {other}"

"""The docs the code and tables cite exist; the package declares its licence, Pythons and deps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

# tomllib is in the standard library from Python 3.11; on 3.10 tomli is the same parser.
tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("protocol", "datasets", "model", "recipes")
_CITED = re.compile(r"docs/([A-Za-z_]+\.md)")


def _sources() -> list[Path]:
    return [*ROOT.glob("mefnet/**/*.py"), *ROOT.glob("conf/**/*.yaml"), *ROOT.glob("docs/*.md"),
            ROOT / "README.md"]


@pytest.mark.parametrize("name", DOCS)
def test_each_doc_exists_and_the_readme_links_it(name):
    text = (ROOT / "docs" / f"{name}.md").read_text()
    assert text.startswith("# ") and len(text.split()) > 300
    assert f"](docs/{name}.md)" in (ROOT / "README.md").read_text()


def test_every_cited_doc_is_in_the_repository():
    cited = {(path.relative_to(ROOT), m) for path in _sources() for m in _CITED.findall(path.read_text())}
    assert cited, "nothing cites docs/"
    missing = [f"{src} cites docs/{name}" for src, name in cited if not (ROOT / "docs" / name).is_file()]
    assert not missing, missing
    for path in _sources():
        assert "PROTOCOL.md" not in path.read_text() and "DATASETS.md" not in path.read_text(), path


def test_the_table_footer_cites_the_protocol_file():
    from mefnet.report import table

    assert "docs/protocol.md" in Path(table.__file__).read_text()


def test_the_recipes_name_every_adapter_and_the_datasets_doc_every_dataset_config():
    doc = (ROOT / "docs" / "datasets.md").read_text()
    for config in (ROOT / "conf" / "dataset").glob("*.yaml"):
        assert f"`{config.stem}`" in doc, config.stem


def test_pyproject_licence_pythons_and_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "mefnet developers" in licence
    assert project["requires-python"] == ">=3.10"
    versions = [c.rsplit(" ", 1)[1] for c in project["classifiers"] if re.search(r":: 3\.\d+$", c)]
    assert versions[0] == "3.10" and len(versions) >= 2
    deps = [re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in project["dependencies"]]
    assert "opencv-contrib-python-headless" in deps and "opencv-contrib-python" not in deps
    assert {"wandb", "submitit", "hydra-submitit-launcher", "torch"} <= set(deps)

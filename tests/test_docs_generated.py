"""The documentation that is generated from the code matches the code, and the site lists
every page.

* docs/configuration.md is what tools/gen_config_reference.py writes from conf/, and every
  config key has a description (a comment in its yaml, or where the key is defined).
* docs/cli.md is what tools/gen_cli_reference.py writes from the commands' --help, and
  every console command's --help ends with an example of that command.
* mkdocs.yml's nav names every page under docs/, and every nav entry exists (the strict
  site build, `make docs`, checks links and API objects).
* README.md stays a manual: at most 400 lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gen_cli_reference  # noqa: E402
import gen_config_reference  # noqa: E402


def test_every_config_key_has_a_description():
    gaps = gen_config_reference.missing()
    assert not gaps, "add a comment in the yaml for:\n" + "\n".join(gaps)


def test_a_key_without_a_comment_is_found(tmp_path, monkeypatch):
    (tmp_path / "widget").mkdir()
    (tmp_path / "train.yaml").write_text("# the primary config\nseed: 1  # the seed\n")
    (tmp_path / "widget" / "small.yaml").write_text("# a small widget\nsize: 3  # its size\ncolour: red\n")
    monkeypatch.setattr(gen_config_reference, "CONF", tmp_path)
    monkeypatch.setattr(gen_config_reference, "ROOT", tmp_path.parent)
    gaps = gen_config_reference.missing()
    assert gaps == [f"{tmp_path.name}/widget/small.yaml:3 colour: no comment"]
    assert "| `size` | `3` | its size |" in gen_config_reference.render()


def test_the_configuration_reference_is_up_to_date():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == gen_config_reference.render(), "run: python tools/gen_config_reference.py"


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return gen_cli_reference.helps()


@pytest.mark.command
def test_every_console_command_help_ends_with_an_example(helps):
    assert set(helps) == set(gen_cli_reference.scripts()) and len(helps) >= 9
    for name, text in helps.items():
        lines = [line for line in text.strip().splitlines() if line.strip()]
        assert len(lines) >= 3, f"{name} --help printed almost nothing: {text!r}"
        assert lines[-2].strip() == "example:", f"{name} --help does not end with an example:\n{text[-400:]}"
        assert lines[-1].startswith(f"  {name} "), f"{name} --help's example is not a {name} command: {lines[-1]!r}"


@pytest.mark.command
def test_the_cli_reference_is_up_to_date(helps):
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert page == gen_cli_reference.render(helps), "run: python tools/gen_cli_reference.py"


def _nav_pages(entries) -> list[str]:
    out = []
    for entry in entries:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_the_site_nav_names_every_page_and_only_pages_that_exist():
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    text = re.sub(r"!!python/name:\S+", "null", text)  # the custom fence's Python reference
    nav = _nav_pages(yaml.safe_load(text)["nav"])
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert set(nav) == pages, f"not in the nav: {sorted(pages - set(nav))}; missing: {sorted(set(nav) - pages)}"


def test_the_readme_is_a_manual_of_at_most_400_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 400

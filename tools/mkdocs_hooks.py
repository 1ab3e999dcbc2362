"""MkDocs hooks: the build fails when a generated reference page is out of date.

docs/configuration.md (from conf/) and docs/cli.md (from each command's --help) are
committed, so they can be read on the repository too; ``mkdocs build`` regenerates both in
memory and stops, naming the page and the command that rewrites it, when the committed
page differs. ``tests/test_docs_generated.py`` checks the same without building the site.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_cli_reference  # noqa: E402
import gen_config_reference  # noqa: E402


def on_pre_build(config, **kwargs) -> None:
    """Compare the committed reference pages with what the generators write now."""
    gaps = gen_config_reference.missing()
    if gaps:
        raise PluginError("config keys without a description (add a comment in the yaml):\n" + "\n".join(gaps))
    checks = [
        (gen_config_reference.OUT, gen_config_reference.render, "tools/gen_config_reference.py"),
        (gen_cli_reference.OUT, lambda: gen_cli_reference.render(gen_cli_reference.helps()), "tools/gen_cli_reference.py"),
    ]
    for path, render, script in checks:
        if path.read_text(encoding="utf-8") != render():
            raise PluginError(f"{path.name} is out of date: run python {script}")

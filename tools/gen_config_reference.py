"""Write docs/configuration.md from the config tree in conf/ (so the reference cannot drift).

Every group, option and key is listed with its default and its meaning. The meaning of a
key is the comment on its line, or the comment lines directly above it (no blank line in
between); the meaning of an option is its file's opening comment. A key without either
is an error: ``python tools/gen_config_reference.py --check`` lists them and exits 1, and
so does ``tests/test_docs_generated.py``.

    python tools/gen_config_reference.py           # rewrite docs/configuration.md
    python tools/gen_config_reference.py --check   # exit 1 if it is out of date or a key lacks a comment
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
OUT = ROOT / "docs" / "configuration.md"

# Hydra's own keys mean the same in every file: they are described once here.
HYDRA_KEYS = {
    "defaults": "Hydra's defaults list: the configs this one is composed from, in order",
    "_target_": "the class or function Hydra instantiates from this block",
    "_partial_": "instantiated as a partial (the rest of its arguments are given later)",
    "_self_": "where this file's own keys go in the defaults list",
    "_recursive_": "false: Hydra leaves the nested blocks for the class to instantiate itself",
}
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_@$.{}\[\]/+-]+|\"[^\"]+\"|'[^']+')\s*:(?:\s+(?P<rest>.*)|\s*$)")


@dataclass
class Key:
    """One key of a config file: its dotted path, default (as written) and meaning."""

    path: str
    default: str
    meaning: str
    line: int


@dataclass
class Option:
    """One config file: a group's option, or the primary config."""

    group: str
    name: str
    file: Path
    meaning: str
    keys: list[Key] = field(default_factory=list)


def _split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes or braces is kept."""
    quote = None
    depth = 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "#" and depth <= 0 and (i == 0 or text[i - 1] in " \t"):
            return text[:i].strip(), text[i + 1:].strip()
    return text.strip(), ""


def _clean(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


_LISTED = re.compile(r"^#\s+(?P<key>[A-Za-z_][A-Za-z0-9_.]*):?\s{2,}(?P<text>\S.*)$")


def _listed(lines: list[str]) -> dict[str, str]:
    """Keys a comment describes as a list (``#   msff:   multi | single | off``), with any
    more-indented continuation lines: ``{key: meaning}``."""
    out: dict[str, str] = {}
    last = None
    last_indent = 0
    for raw in lines:
        s = raw.strip()
        if not s.startswith("#"):
            last = None
            continue
        m = _LISTED.match(s)
        indent = len(s) - len(s.lstrip("#").lstrip()) if s.startswith("#") else 0
        if m:
            last, last_indent = m.group("key"), indent
            out[last] = m.group("text").strip()
        elif last and indent > last_indent + 2 and s.lstrip("#").strip():
            out[last] += " " + s.lstrip("#").strip()
        else:
            last = None
    return out


def parse(path: Path) -> tuple[str, list[Key]]:
    """(the file's opening comment, its keys) of one yaml file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    listed = _listed(lines)
    header: list[str] = []
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        text = lines[i].strip().lstrip("#").strip()
        if not text.startswith("@package"):
            header.append(text)
        i += 1
    header_end = i  # the opening comment describes the file (the option), never its first key
    keys: list[Key] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    pending: list[str] = []  # comment lines directly above the next key
    skip_below: int | None = None  # inside a list item or a block scalar: indent of its key
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if not stripped:
            pending = []
            continue
        if skip_below is not None:
            if indent > skip_below or (stripped.startswith("-") and indent >= skip_below):
                continue
            skip_below = None
        if stripped.startswith("#"):
            if number > header_end:
                pending.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("-"):
            # a block list belongs to the key above it; its items are that key's data
            skip_below = indent
            pending = []
            continue
        m = _KEY.match(raw)
        if not m:
            pending = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = m.group("key").strip("\"'")
        value, comment = _split_comment(m.group("rest") or "")
        dotted = ".".join([k for _, k in stack] + [key])
        meaning = comment or _clean(pending) or listed.get(dotted, listed.get(key, "")) or HYDRA_KEYS.get(key, "")
        if value in ("|", ">", "|-", ">-"):
            skip_below = indent
            value = "(text)"
        if value == "" and key != "defaults":
            stack.append((indent, key))
            if not meaning:
                # a section: its keys are listed with their full path, each with its meaning
                pending = []
                continue
        keys.append(Key(dotted, value, meaning, number))
        if key == "defaults" and value == "":
            skip_below = indent
        pending = []
    return _clean(header), keys


def options() -> list[Option]:
    """Every yaml file under conf/, the primary config first, then group by group.

    A key that a file sets without a comment takes the meaning written where the key is
    defined: the same key in another option of its group (``name``, ``index.root``), the
    primary config, or, for a ``group.key`` path (an experiment setting
    ``optimizer.lr``), that group's options. One comment per key is then enough.
    """
    out = []
    for path in sorted(CONF.rglob("*.yaml"), key=lambda p: (p.parent != CONF, str(p.parent), p.stem)):
        rel = path.relative_to(CONF)
        group = "/".join(rel.parts[:-1])
        meaning, keys = parse(path)
        out.append(Option(group, path.stem, path, meaning, keys))
    known: dict[tuple[str, str], str] = {}
    for o in out:
        for k in o.keys:
            if k.meaning:
                known.setdefault((o.group, k.path), k.meaning)
    for o in out:
        for k in o.keys:
            if not k.meaning:
                k.meaning = _inherited(known, o.group, k.path)
    return out


def _inherited(known: dict[tuple[str, str], str], group: str, path: str) -> str:
    """The meaning of ``path`` where it is defined (see :func:`options`), or ''."""
    if (group, path) in known:
        return known[(group, path)]
    m = re.fullmatch(r"index\.parts\.[^.]+\.(.+)", path)
    if m and (group, f"index.{m.group(1)}") in known:  # a composite's part: the adapter's key
        return known[(group, f"index.{m.group(1)}")]
    m = re.fullmatch(r"hydra\.sweeper\.params\.(.+)", path)
    if m and (CONF / m.group(1)).is_dir():
        return f"the `{m.group(1)}` option every experiment of the set uses"
    if m:  # a value every experiment of a sweep gets: the key's own meaning
        return _inherited(known, "", m.group(1)) or _inherited(known, group, m.group(1))
    if group == "pretrain" and path.startswith("data."):  # the pretraining set is a dataset config
        return _inherited(known, "dataset", path[len("data."):])
    if re.fullmatch(r"hydra\.sweeper\.runs\.[^.]+", path):
        return "an experiment of the set: its name and overrides"
    m = re.fullmatch(r"(.+)\.[^.]+", path)
    if m and (group, m.group(1)) in known:  # one entry of a per-dataset mapping (face.casme3)
        return known[(group, m.group(1))]
    if ("", path) in known:
        return known[("", path)]
    head, _, rest = path.partition(".")
    for g in (head, f"{group}/{head}" if group else head):
        if rest and (g, rest) in known:
            return known[(g, rest)]
    if path.startswith("hydra.") and rest:
        sub, _, tail = rest.partition(".")
        if (f"hydra/{sub}", tail) in known:
            return known[(f"hydra/{sub}", tail)]
    return ""


def missing() -> list[str]:
    """``file:line key`` of every key without a meaning, and every option without one."""
    out = []
    for opt in options():
        rel = opt.file.relative_to(ROOT)
        if not opt.meaning:
            out.append(f"{rel}: no opening comment saying what this option is")
        out += [f"{rel}:{k.line} {k.path}: no comment" for k in opt.keys if not k.meaning]
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def render() -> str:
    """The markdown page."""
    opts = options()
    parts = [
        "# Configuration reference",
        "",
        "<!-- Generated by tools/gen_config_reference.py from conf/: do not edit by hand. -->",
        "",
        "Every config group, option and key of `conf/`, with its default and meaning, generated "
        "from the yaml files and their comments (`python tools/gen_config_reference.py`). Pick an "
        "option with `group=option`, set a key with `key=value`, add one the file lacks with "
        "`+key=value`; see [Training](training.md) for how the pieces fit together.",
        "",
        "## Groups",
        "",
        "| group | options (the default in bold, where `conf/train.yaml` picks one) |",
        "|---|---|",
    ]
    primary = next(o for o in opts if not o.group and o.name == "train")
    chosen = {}
    text = (CONF / "train.yaml").read_text(encoding="utf-8")
    for m in re.finditer(r"^\s*-\s*([a-z_/]+):\s*([A-Za-z0-9_]+)", text, flags=re.M):
        chosen[m.group(1)] = m.group(2)
    groups: dict[str, list[Option]] = {}
    for o in opts:
        if o.group:
            groups.setdefault(o.group, []).append(o)
    for g, os_ in groups.items():
        names = ", ".join(f"**`{o.name}`**" if chosen.get(g) == o.name else f"`{o.name}`" for o in os_)
        parts.append(f"| [`{g}`](#{_anchor(g)}) | {names} |")
    parts += ["", "## The primary config: `conf/train.yaml`", "", _para(primary.meaning), ""]
    parts += _table(primary.keys)
    for o in opts:
        if not o.group and o is not primary:
            parts += ["", f"## The config of `mefnet-{o.name}`: `conf/{o.name}.yaml`", "", _para(o.meaning), ""]
            parts += _table(o.keys)
    for g, os_ in groups.items():
        parts += ["", f"## {g}", ""]
        for o in os_:
            parts += [f"### `{g}={o.name}`", "", f"`conf/{g}/{o.name}.yaml`: {_para(o.meaning)}", ""]
            parts += _table(o.keys) if o.keys else ["(no keys)"]
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _anchor(group: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", group.lower().replace("/", ""))


def _para(text: str) -> str:
    return text or ""


def _table(keys: list[Key]) -> list[str]:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for k in keys:
        default = f"`{_cell(k.default)}`" if k.default else ""
        rows.append(f"| `{k.path}` | {default} | {_cell(k.meaning)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Write docs/configuration.md, or with --check say whether it is up to date; exit status 1
    when it is not, or when a key has no description."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the page is out of date or a key lacks a comment")
    a = ap.parse_args(argv)
    gaps = missing()
    if gaps:
        print(f"{len(gaps)} config key(s) without a description:", file=sys.stderr)
        print("\n".join(gaps), file=sys.stderr)
    page = render()
    if a.check:
        stale = not OUT.is_file() or OUT.read_text(encoding="utf-8") != page
        if stale:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python tools/gen_config_reference.py", file=sys.stderr)
        return 1 if stale or gaps else 0
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())

"""Action-unit parsing: the notation of each dataset, and every AU cell of the three real sheets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mefnet.datasets.action_units import (
    DEFAULT_AU_SET,
    au_vector,
    check_au_set,
    normalise,
    parse_au_cell,
    parse_normalised,
)
from mefnet.datasets.casme2 import read_casme2_sheet
from mefnet.datasets.casme3 import read_casme3_sheet
from mefnet.datasets.samm import read_samm_sheet
from tests.dataset_trees import CASME2_SHEET, CASME3_SHEET, SAMM_SHEET


@pytest.mark.parametrize(
    ("cell", "aus"),
    [
        ("12", (12,)), (12, (12,)), (4.0, (4,)), ("4+7", (4, 7)), ("R12", (12,)), ("L10", (10,)),
        ("L1+L2", (1, 2)), ("A1+A2", (1, 2)), ("R14A", (14,)), ("7B", (7,)), ("10A/B", (10,)),
        ("A/L12", (12,)), ("T18+39", (18, 39)), ("B28", (28,)), ("2+1", (1, 2)), ("9+4+14", (4, 9, 14)),
        ("4,7", (4, 7)), ("12+15 ", (12, 15)), ("L12 + 61", (12, 61)), ("1A+2B+L14C", (1, 2, 14)),
        ("", ()), ("/", ()), (None, ()), (float("nan"), ()),
    ],
)
def test_one_au_notation_per_dataset_parses_to_numbers(cell, aus):
    parsed = parse_au_cell(cell)
    assert parsed.problem is None and parsed.aus == aus and parsed.uncertain == ()


def test_uncertain_aus_are_listed_and_counted_only_when_asked():
    p = parse_au_cell("(R6 or R12)+R15")
    assert (p.aus, p.uncertain) == ((15,), (6, 12))
    assert parse_au_cell("(R6 or R12)+R15", "include").aus == (6, 12, 15)
    p = parse_au_cell("4D+ref(6)+7C+43E")
    assert (p.aus, p.uncertain) == ((4, 7, 43), (6,))
    assert parse_au_cell("R14A or 17A or 24A", "include").aus == (14, 17, 24)
    assert parse_au_cell("ref(7B)+43").normalised == "43"


@pytest.mark.parametrize("cell", ["?", "R14+17+soft focus", "4++7", "(4+7", "AU", "123"])
def test_what_is_not_an_au_is_a_problem_not_a_guess(cell):
    p = parse_au_cell(cell)
    assert p.problem and p.aus == ()


def test_normalised_form_round_trips_and_targets_follow_the_au_set():
    assert normalise([12, 4, 4]) == "4+12" and parse_normalised("4+12") == (4, 12)
    assert parse_normalised("") == ()
    assert au_vector((4, 12, 43), DEFAULT_AU_SET) == [0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert check_au_set(["AU1", 2, "12"]) == (1, 2, 12)
    with pytest.raises(ValueError, match="twice"):
        check_au_set([1, 1])
    with pytest.raises(ValueError, match="empty"):
        check_au_set([])


# -- every AU cell of the three real sheets ----------------------------------------------------
# Clips per AU of the default set (uncertain AUs excluded), written down from the sheets:
# CASME II 20140508 (255 rows), SAMM v2 MICRO_ONLY (159 rows), CAS(ME)^3 part A v2 (860 rows).
EXPECTED = {
    "casme2": {1: 26, 2: 21, 4: 129, 5: 2, 6: 13, 7: 38, 9: 13, 10: 17, 12: 34, 14: 27, 15: 16, 17: 25},
    "samm": {1: 6, 2: 18, 4: 23, 5: 9, 6: 2, 7: 44, 9: 5, 10: 4, 12: 26, 14: 9, 15: 4, 17: 5},
    "casme3": {1: 153, 2: 128, 4: 274, 5: 44, 6: 8, 7: 27, 9: 50, 10: 10, 12: 15, 14: 193, 15: 6, 17: 20},
}
# Rows (as Excel numbers them) whose cell does not parse, with the cell.
UNPARSED = {
    "casme2": {42: "?", 45: "?", 50: "?", 186: "?", 246: "?"},
    "samm": {135: "R14+17+soft focus"},
    "casme3": {},
}
# Rows with uncertain AUs (ref(X), X or Y): counted with uncertain=include.
UNCERTAIN_ROWS = {"casme2": 0, "samm": 14, "casme3": 0}
# Parseable rows with no AU of the default set.
NO_AU_IN_SET = {"casme2": 6, "samm": 28, "casme3": 112}


def _table(annotations: Path, dataset: str):
    read, name = {"casme2": (read_casme2_sheet, CASME2_SHEET), "samm": (read_samm_sheet, SAMM_SHEET),
                  "casme3": (read_casme3_sheet, CASME3_SHEET)}[dataset]
    return read(annotations / name)


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ["casme2", "samm", "casme3"])
def test_every_au_cell_of_the_real_sheet_parses_or_is_reported_by_row(annotations, dataset):
    table = _table(annotations, dataset)
    assert "aus" in table.attrs["columns_found"]
    counts: Counter = Counter()
    unparsed, uncertain, without = {}, 0, 0
    for row, cell in zip(table["excel_row"], table["aus"], strict=True):
        p = parse_au_cell(cell)
        if p.problem:
            unparsed[int(row)] = str(cell)
            continue
        uncertain += bool(p.uncertain)
        counts.update(a for a in p.aus if a in DEFAULT_AU_SET)
        without += not set(p.aus) & set(DEFAULT_AU_SET)
    assert dict(counts) == EXPECTED[dataset]
    assert unparsed == UNPARSED[dataset]
    assert uncertain == UNCERTAIN_ROWS[dataset]
    assert without == NO_AU_IN_SET[dataset]
    assert len(table) == sum(1 for _ in table["aus"])  # every row was looked at


@pytest.mark.realdata
def test_samm_uncertain_aus_change_the_counts_only_when_included(annotations):
    table = _table(annotations, "samm")
    counts: Counter = Counter()
    for cell in table["aus"]:
        p = parse_au_cell(cell, "include")
        if p.problem is None:
            counts.update(a for a in p.aus if a in DEFAULT_AU_SET)
    assert dict(counts) == {1: 6, 2: 18, 4: 23, 5: 10, 6: 5, 7: 46, 9: 5, 10: 6, 12: 30, 14: 12, 15: 4, 17: 6}


@pytest.mark.realdata
def test_adapters_record_normalised_aus_and_the_au_task_reports_bad_cells_by_row(annotations, tmp_path):
    from mefnet.datasets.casme2 import load_casme2
    from mefnet.datasets.clip_index import DatasetError
    from mefnet.datasets.samm import load_samm
    from tests.dataset_trees import build_casme2_tree, build_samm_tree

    root = build_casme2_tree(tmp_path / "casme2", annotations)
    sheet = annotations / CASME2_SHEET
    emotion = load_casme2(root, sheet, protocol="all", on_bad_clip="skip")
    assert {c.aus for c in emotion if c.clip == "EP02_01f" and c.subject == "sub01"} == {"12"}
    with pytest.raises(DatasetError, match=r"row 42 .*action units '\?' do not parse"):
        load_casme2(root, sheet, protocol="all", action_units=True, drop_clips_without_onset_apex_motion=True)
    with pytest.warns(UserWarning):
        au = load_casme2(root, sheet, protocol="all", action_units=True, on_bad_clip="skip")
    assert len(au) == 254 - 5 and sum("do not parse" in s for s in au.skipped) == 5
    samm_root = build_samm_tree(tmp_path / "samm", annotations)
    with pytest.warns(UserWarning, match="soft focus"):
        samm = load_samm(samm_root, annotations / SAMM_SHEET, protocol="all", action_units=True,
                         on_bad_clip="skip")
    assert next(c.aus for c in samm if c.clip == "006_1_2") == parse_au_cell(
        _table(annotations, "samm").set_index("clip").loc["006_1_2", "aus"]).normalised


@pytest.mark.realdata
def test_the_paper_au_composite_loads_the_three_real_sheets_with_their_au_counts(annotations, tmp_path):
    """dataset=composite datasets=[casme2,samm,casme3] task=au, as the paper set's AU rows run it
    (frames are generated stand-ins; the sheets are the real ones)."""
    import warnings

    from mefnet.config import compose
    from mefnet.experiment.plan import load_index
    from mefnet.runs.splits import Split
    from tests.dataset_trees import build_casme2_tree, build_casme3_tree, build_samm_tree

    roots = {"casme2": build_casme2_tree(tmp_path / "c2", annotations),
             "samm": build_samm_tree(tmp_path / "samm", annotations),
             "casme3": build_casme3_tree(tmp_path / "c3", annotations)}
    cfg = compose([
        "dataset=composite", "dataset.datasets=[casme2,samm,casme3]", "dataset.index.protocol=all",
        "dataset.index.on_bad_clip=skip", "task=au", "protocol=lodo",
        f"dataset.index.parts.casme2.root={roots['casme2']}", f"dataset.index.parts.casme2.sheet={annotations / CASME2_SHEET}",
        f"dataset.index.parts.samm.root={roots['samm']}", f"dataset.index.parts.samm.sheet={annotations / SAMM_SHEET}",
        f"dataset.index.parts.casme3.root={roots['casme3']}", f"dataset.index.parts.casme3.sheet='{annotations / CASME3_SHEET}'",
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = load_index(cfg)
    assert index.datasets == ["casme2", "samm", "casme3"]
    assert Split("lodo").folds(index) == ["lodo/casme2", "lodo/samm", "lodo/casme3"]
    for dataset in ("casme2", "samm", "casme3"):
        counts: Counter = Counter()
        for c in index:
            if c.dataset == dataset:
                counts.update(a for a in parse_normalised(c.aus) if a in DEFAULT_AU_SET)
        # The sheet's counts, less the clips the loader cannot use (bad apex or frames,
        # unparseable AU cell): never more, and most of them.
        for au, n in EXPECTED[dataset].items():
            assert counts[au] <= n and counts[au] >= 0.9 * n, (dataset, au, counts[au], n)
    # Every clip has an AU of the set (no_au_clips=drop), and every dropped one is listed.
    assert all(set(parse_normalised(c.aus)) & set(DEFAULT_AU_SET) for c in index)
    assert sum("no AU of the AU set" in s for s in index.skipped) >= NO_AU_IN_SET["casme2"]

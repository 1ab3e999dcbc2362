"""The MEGC2019 composite, rebuilt from the three datasets' own sheets and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from mefnet.datasets.clip_index import DatasetError
from mefnet.datasets.megc2019 import load_megc2019, read_megc2019_ground_truth
from tests.dataset_trees import (
    CASME2_SHEET,
    MEGC2019_GT,
    SAMM_SHEET,
    build_casme2_tree,
    build_samm_tree,
    build_smic_tree,
)

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def roots(annotations: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("megc2019")
    return {
        "casme2_root": build_casme2_tree(base / "casme2", annotations),
        "samm_root": build_samm_tree(base / "samm", annotations),
        "smic_root": build_smic_tree(base / "smic", annotations),
    }


def test_composite_builder_yields_the_official_442_clips_label_for_label(roots, annotations):
    with pytest.warns(UserWarning, match="2 clip"):  # the two CASME II apex defects, listed
        index = load_megc2019(
            **roots, casme2_sheet=annotations / CASME2_SHEET, samm_sheet=annotations / SAMM_SHEET
        )
    official = read_megc2019_ground_truth(annotations / MEGC2019_GT)
    built = [(c.dataset, c.subject, c.clip, c.label) for c in index]
    assert len(built) == 442 and sorted(built) == sorted(official)
    assert [d for d, *_ in built] == [d for d, *_ in official]  # same dataset order
    assert len(index.subjects) == 68
    assert index.class_names == ["negative", "positive", "surprise"]
    assert index.class_counts() == [250, 109, 83]
    per_dataset = {d: sum(c.dataset == d for c in index) for d in index.datasets}
    assert per_dataset == {"casme2": 145, "smic": 164, "samm": 133}
    assert sorted(s.split("(clip ")[1].split(")")[0] for s in index.skipped) == [
        "casme2/sub04/EP12_01f", "casme2/sub05/EP09_05f",
    ]


def test_official_list_ids_are_read_in_the_index_spelling(annotations):
    official = read_megc2019_ground_truth(annotations / MEGC2019_GT)
    assert ("samm", "006", "006_1_2", 0) in official  # the file writes samm,6,006_1_2,0
    assert ("smic", "s01", "s01_ne_01", 0) in official


def test_a_missing_root_names_its_config_key():
    with pytest.raises(DatasetError, match=r"SAMM root.*MEFNET_SAMM_ROOT.*dataset.index.samm_root"):
        load_megc2019(".", None, ".")

"""conf/dataset/*.yaml build their ClipIndex through hydra.utils.instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mefnet.datasets.clip_index import DatasetError

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
NAMES = ("casme2", "samm", "smic", "casme3", "megc2019", "flow_folder", "frames_csv")
ENV = {"casme2": "MEFNET_CASME2_ROOT", "samm": "MEFNET_SAMM_ROOT", "smic": "MEFNET_SMIC_ROOT",
       "casme3": "MEFNET_CASME3_ROOT", "megc2019": "MEFNET_CASME2_ROOT", "flow_folder": "MEFNET_FLOW_ROOT",
       "frames_csv": "MEFNET_FRAMES_ROOT"}


@pytest.mark.parametrize("name", NAMES)
def test_config_has_name_face_and_an_index_target(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    methods = cfg.face.values() if OmegaConf.is_dict(cfg.face) else [cfg.face]
    assert cfg.name == name and set(methods) <= {"none", "landmarks", "haar"}
    assert cfg.index._target_.startswith("mefnet.datasets.")


def test_face_defaults_per_dataset_and_per_source_in_the_composite():
    face = {name: OmegaConf.load(CONF / f"{name}.yaml").face for name in NAMES}
    assert (face["casme2"], face["smic"], face["samm"]) == ("none", "none", "landmarks")
    # The composite crops each source as that dataset's own config does.
    assert OmegaConf.to_container(face["megc2019"]) == {"casme2": "none", "smic": "none", "samm": "landmarks"}


@pytest.mark.parametrize("name", NAMES)
def test_unset_root_variable_says_what_to_set(name, monkeypatch):
    for var in set(ENV.values()):
        monkeypatch.delenv(var, raising=False)
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    with pytest.raises(Exception) as caught:
        instantiate(cfg.index)
    chain = [caught.value, caught.value.__cause__]
    assert any(isinstance(e, DatasetError) and ENV[name] in str(e) for e in chain if e), str(caught.value)


@pytest.mark.realdata
def test_flow_folder_config_reads_the_root_from_the_environment(realdata, monkeypatch):
    monkeypatch.setenv("MEFNET_FLOW_ROOT", str(realdata / "flows" / "megc2019_smic"))
    index = instantiate(OmegaConf.load(CONF / "flow_folder.yaml").index)
    assert len(index) == 164

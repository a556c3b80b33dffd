"""The training phases and the grid as data (tss.train.config)."""

from __future__ import annotations

import pytest

from tss.train import Experiment, grid
from tss.train.config import PREVIOUS


def test_grid_lists_sources_before_their_users_and_imagenet_only_in_2d():
    exps = grid()
    names = [e.name for e in exps]
    for i, e in enumerate(exps):
        if e.source():
            assert e.source() in names[:i], f"{e.name} runs before its source {e.source()}"
    assert {e.arch for e in exps if e.init == "imagenet"} == {"2d"}
    assert Experiment("3d", "stroke", "genesis").source() == "3d-genesis-random"
    assert Experiment("2d", "tss45", "transfer").source() == "2d-tss3-transfer"
    assert Experiment("2d", "attention", "transfer").source() == "2d-tss45-transfer"
    assert set(PREVIOUS) == {"tss3", "tss45", "attention"}
    assert not [e for e in grid(imagenet=False) if e.init == "imagenet"]


def test_an_experiment_is_parsed_from_its_name_and_nothing_else_is():
    assert Experiment.parse("3d-tss45-transfer") == Experiment("3d", "tss45", "transfer")
    assert all(Experiment.parse(e.name) == e for e in grid())
    for bad in ("2d-tss45", "4d-tss45-random", "2d-tss4-random", "2d-tss45-pretrained", "lee-et-al-2020"):
        with pytest.raises(ValueError, match="not an experiment name"):
            Experiment.parse(bad)

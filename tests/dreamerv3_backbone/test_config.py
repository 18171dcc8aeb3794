"""Config presets and dotted overrides."""

import pytest

from cardreamer.training.config import apply_overrides, make_config
from dreamerv3_backbone.config import PRESETS


def test_sizes_follow_reference_table():
    cfg = make_config("12m")
    assert (cfg.model.deter, cfg.model.hidden, cfg.model.classes, cfg.model.depth, cfg.model.units) == (
        2048, 256, 16, 16, 256)
    assert make_config("200m").model.deter == 8192
    assert set(PRESETS) >= {"tiny", "cpu", "1m", "12m", "25m", "50m", "100m", "200m"}


def test_overrides_parse_types_and_nested_keys():
    cfg = make_config("tiny", ["model.lr=1e-3", "run.steps=500", "env.image_size=[32, 32]", "run.serve=true",
                               "model.loss_scales.rep=0.5", "env.overrides=[env.world.backend=carla]"])
    assert cfg.model.lr == 1e-3 and cfg.run.steps == 500 and cfg.env.image_size == [32, 32]
    assert cfg.run.serve is True and cfg.model.loss_scales.rep == 0.5
    assert cfg.env.overrides == ["env.world.backend=carla"]
    assert make_config("tiny", {"model": {"units": 48}}).model.units == 48


def test_unknown_key_names_nearest_valid_key():
    with pytest.raises(KeyError, match="model.batch_size"):
        make_config("tiny", ["model.batchsize=4"])
    with pytest.raises(KeyError, match="unknown size .huge. of backbone .dreamerv3.; valid sizes: 1m"):
        make_config("huge")


def test_wrong_type_is_rejected_with_key_and_value():
    with pytest.raises(TypeError, match="run.steps.*'many'"):
        make_config("tiny", ["run.steps=many"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(make_config("tiny"), ["run.steps"])

import pytest

from lab.config import ConfigError, RunConfig, apply_overrides, from_dict


def test_overrides_parse_by_declared_type():
    cfg = apply_overrides(
        RunConfig(),
        [
            "model.d_model=96",
            "train.lr=3e-3",
            "model.tie_embeddings=false",
            "train.tokens=2e6",
            "data.name=synthetic",
            "mesh=data=2",
        ],
    )
    assert cfg.model.d_model == 96 and cfg.train.lr == 3e-3 and cfg.model.tie_embeddings is False
    assert cfg.train.tokens == 2_000_000 and cfg.data.name == "synthetic" and cfg.mesh == "data=2"


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.d_modl=3", "unknown config key"),
        ("model.d_model=abc", "expected int"),
        ("model.d_model=1.5", "expected int"),
        ("train.lr=fast", "expected float"),
        ("model=3", "is a group"),
        ("nothing", "key=value"),
        ("model.tie_embeddings=maybe", "expected bool"),
    ],
)
def test_override_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), [item])


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.d_model=30", "not divisible"),
        ("model.pos_encoding=alibi", "not one of"),
        ("train.schedule=linear", "not one of"),
        ("data.name=wikipedia", "unknown dataset"),
    ],
)
def test_validation_errors(item, message):
    cfg = apply_overrides(RunConfig(), [item, "train.steps=10"])
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_round_trip_and_hash():
    cfg = apply_overrides(RunConfig(), ["model.d_model=96", "train.steps=7"])
    again = from_dict(RunConfig, cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()
    assert apply_overrides(cfg, ["train.seed=1"]).hash() != cfg.hash()


def test_total_steps_from_tokens_rounds_up():
    cfg = apply_overrides(RunConfig(), ["train.tokens=1500", "train.batch_size=2", "model.seq_len=100"])
    assert cfg.total_steps == 8 and cfg.total_tokens == 1600

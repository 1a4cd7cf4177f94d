import pytest

from lab.config import ConfigError, RunConfig
from lab.overrides import apply_overrides, from_dict


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


def test_fields_added_later_enter_the_hash_only_when_set():
    # the default config's run ID from before the copy task's fields existed: old studies still resume
    assert RunConfig().hash() == "0a76d4bddaa5f45d"
    assert apply_overrides(RunConfig(), ["data.copy_len=8"]).hash() == "0a76d4bddaa5f45d"  # the default
    assert apply_overrides(RunConfig(), ["data.copy_len=9"]).hash() != "0a76d4bddaa5f45d"


def test_total_steps_from_tokens_rounds_up():
    cfg = apply_overrides(RunConfig(), ["train.tokens=1500", "train.batch_size=2", "model.seq_len=100"])
    assert cfg.total_steps == 8 and cfg.total_tokens == 1600


@pytest.mark.parametrize(
    "items, message",
    [
        (
            ["train.steps=0", "train.tokens=1e30"],
            "train.tokens=1e+30 makes 9.77e+26 steps of 1024 tokens, more than a run can count",
        ),
        (["train.steps=2147483648"], "the step counter is an int32"),
        (["train.lr=1e308"], "train.lr=1e+308 is not a float32 number"),
        (["train.eps=1e-300"], "train.eps=1e-300 is not a float32 number"),
        (["train.weight_decay=1e39"], "train.weight_decay=1e+39 is not a float32 number"),
        (["train.warmup_steps=1e30"], "must lie in [-1, 2147483647]"),
        (["model.rope_theta=nan"], "model.rope_theta=nan is not a positive float32 number"),
        (["model.init_std=1e-50"], "model.init_std=1e-50 is not a float32 number"),
    ],
)
def test_values_training_cannot_represent_are_refused(items, message):
    """A length the int32 step counter cannot count, or a float32 field that would overflow to inf
    (lr 1e308 "diverged") or underflow to 0, is a config error, before any run directory is made."""
    cfg = apply_overrides(RunConfig(), ["train.steps=10", *items])
    with pytest.raises(ConfigError) as e:
        cfg.validate()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_longest_countable_run_and_float32_extremes_are_accepted():
    assert apply_overrides(RunConfig(), ["train.steps=2147483647"]).validate().total_steps == 2**31 - 1
    cfg = apply_overrides(RunConfig(), ["train.steps=10", "train.lr=3e38", "train.eps=2e-38", "train.z_loss=0"])
    assert cfg.validate().train.lr == 3e38


def test_lab_train_refuses_an_impossible_length_before_writing(tmp_path, capsys):
    from lab.cli import main

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--tokens", "1e30", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lab train: error: train.tokens=1e+30") and len(err.strip().splitlines()) == 1
    assert not out.exists()

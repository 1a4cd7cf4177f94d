"""The tuned frontier (lab.study.lr_law, `Study.lr_law`): every cell's rate from a fitted η_opt(N, D);
bad law files refused in one line before anything trains; out-of-range sizes warned in one line;
each row's tuning gap against its LR neighbours; the LR fit's JSON carries what the policy checks."""

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from analysis.fits.lr import fit_lr
from analysis.table import fit_data
from lab.cli import main
from lab.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.costs import model_costs
from lab.study import Study
from lab.study.load import load_study
from lab.study.lr_law import read_lr_law
from lab.study.results import with_tuning_gaps
from lab.study.spec import expand

BASE = RunConfig(
    model=ModelConfig(seq_len=32),
    data=DataConfig(val_tokens=1024),
    train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0),
)
LAW = {
    "method": "lr",
    "c": 0.5,
    "a_N": -0.4,
    "b_D": 0.0,
    "n_range": [1.0e4, 4.0e4],
    "d_range": None,
    "n_column": "params_total",
    "corpus": {"dataset": "python_stdlib", "tokenizer": "byte", "vocab_size": 256},
}


def law_file(tmp_path, **change):
    path = tmp_path / "law.json"
    path.write_text(json.dumps({**LAW, **change}))
    return path


def study(law, **kw):
    return Study(
        name="tuned",
        base=BASE,
        sizes=[{"d_model": 16}, {"d_model": 32}, {"d_model": 64}],
        budgets=[2e9],
        min_steps=5,
        lr_law=str(law),
        **kw,
    )


def test_each_cell_trains_at_the_laws_rate_and_out_of_range_sizes_warn_once(tmp_path, capsys):
    cells = expand(study(law_file(tmp_path)), 256)
    for c in cells:
        n = model_costs(c.config.model).params_total
        assert c.config.train.lr == pytest.approx(0.5 * n**-0.4, rel=1e-12)
    lrs = [c.config.train.lr for c in cells]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] / lrs[-1] > 2  # smaller models, larger rates
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fitted on N 1e+04–4e+04" in err[0] and "1 of 3 cells (N 1.15e+05" in err[0]
    wide = expand(study(law_file(tmp_path, n_range=[1e3, 1e6])), 256)
    assert capsys.readouterr().err == "" and len(wide) == 3


def test_multipliers_scale_the_tuned_rate_and_rows_record_the_tuning_gap(tmp_path):
    cells = expand(study(law_file(tmp_path), lr_multipliers=[0.5, 1, 2]), 256)
    d16 = [c for c in cells if c.lr_group == "d16L2-C2e+09-s0"]
    tuned = 0.5 * model_costs(d16[0].config.model).params_total ** -0.4
    assert [c.config.train.lr for c in d16] == pytest.approx([tuned / 2, tuned, 2 * tuned])
    rows = [
        {"cell_id": c.cell_id, "status": "completed", "final_val_loss": loss}
        for c, loss in zip(d16, ("2.50", 2.25, 2.40))
    ]
    rows.append({"cell_id": "other", "status": "completed", "final_val_loss": 1.0})
    gaps = with_tuning_gaps(rows, {c.cell_id: c.lr_group for c in d16})
    assert [r.get("tuning_gap") for r in gaps] == pytest.approx([0.25, 0.0, 0.15, None])
    lone = with_tuning_gaps(rows[:1], {c.cell_id: c.lr_group for c in d16})  # one rate: not measured
    assert lone[0]["tuning_gap"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"c": "x"}, "damaged LR law: c must be a finite number"),
        ({"method": "isoflop"}, "not an LR law"),
        ({"corpus": {}}, "does not say which corpus"),
        ({"n_range": [5.0, 1.0]}, "n_range must be"),
    ],
)
def test_damaged_laws_are_refused(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        read_lr_law(law_file(tmp_path, **change))


def test_missing_unreadable_and_foreign_laws_fail_in_one_line_before_training(tmp_path, capsys):
    (tmp_path / "junk.json").write_text("{not json")
    law_file(tmp_path, corpus={"dataset": "python_stdlib", "tokenizer": "bpe", "vocab_size": 1024})
    for law, message in [
        ("nowhere.json", "no such file"),
        ("junk.json", "not JSON"),
        ("law.json", "fitted on corpus 'python_stdlib', tokenizer 'bpe', vocabulary 1024"),
    ]:
        path = tmp_path / "study.py"
        path.write_text(
            textwrap.dedent(f"""
            from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
            from lab.study import Study
            def study():
                base = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                                 train=TrainConfig(batch_size=4))
                return Study(name="t", base=base, sizes=[{{"d_model": 16}}], budgets=[2e9], min_steps=5,
                             lr_law={law!r})
            """)
        )
        assert load_study(path).lr_law == str(tmp_path / law)  # relative to the study file
        code = main(["study", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
        assert not (tmp_path / "out").exists()  # nothing trained


def test_the_lr_fit_records_corpus_and_ranges_that_a_study_can_read(tmp_path):
    rows = []
    for n in (1e4, 3e4, 1e5):
        for lr in np.geomspace(1e-3, 1e-1, 7):
            loss = 2 + 0.3 * np.log(lr / (0.3 * n**-0.4)) ** 2
            rows.append(
                {
                    "cell_id": f"{n}-{lr}",
                    "status": "completed",
                    "params_total": n,
                    "tokens": 1e6,
                    "flops_exact": 6e6 * n,
                    "final_val_loss": loss,
                    "lr": lr,
                    "dataset": "python_stdlib",
                    "tokenizer": "byte",
                    "vocab_size": 256,
                }
            )
    (tmp_path / "sweep").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "sweep" / "results.csv", index=False)
    from_dir = read_lr_law(tmp_path / "sweep")  # a study directory: fitted on the spot
    assert from_dir.a_N == pytest.approx(-0.4, abs=0.05) and from_dir.dataset == "python_stdlib"
    fit = fit_lr(fit_data(pd.DataFrame(rows)), n_boot=10)
    out = fit.to_json_dict()
    assert out["corpus"] == {"dataset": "python_stdlib", "tokenizer": "byte", "vocab_size": 256}
    assert out["n_range"] == [1e4, 1e5] and out["d_range"] is None and out["n_column"] == "params_total"
    path = tmp_path / "fitted.json"
    path.write_text(json.dumps(out))
    law = read_lr_law(path)
    assert law.b_D == 0 and law.a_N == pytest.approx(-0.4, abs=0.05)
    assert law.rate(3e4, 5e5) == pytest.approx(0.3 * 3e4**-0.4, rel=0.1)

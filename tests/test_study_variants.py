"""Architectures as study axes: variant cells, their ids and rows, and one fit per variant."""

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from analysis.reports.by_group import fit_groups
from lab.cli import main
from lab.config import ConfigError
from lab.study.load import load_study
from lab.study.spec import expand

HEADER = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))
"""


def study_file(tmp_path, body):
    p = tmp_path / "study.py"
    p.write_text(textwrap.dedent(HEADER + body))
    return load_study(p)


def test_variants_cross_sizes_and_get_their_own_ids_and_windows(tmp_path):
    study = study_file(
        tmp_path,
        """
def study():
    return Study(name="v", base=BASE, sizes=[{"d_model": d} for d in (16, 32, 48, 64)], budgets=[1e10, 1e11],
                 window=2, min_steps=1, variants=[{"arch": "decoder"}, {"arch": "encdec"}, {"attn_window": 8}])
""",
    )
    cells = expand(study, vocab_size=256)
    assert len(cells) == 3 * 2 * 2  # variants x budgets x window
    assert len({c.cell_id for c in cells}) == len(cells)
    assert {c.variant for c in cells} == {"arch=decoder", "arch=encdec", "attn_window=8"}
    enc = [c for c in cells if c.variant == "arch=encdec"]
    assert all(c.config.model.arch == "encdec" and "-arch.encdec-" in c.cell_id for c in enc)
    assert all(c.config.model.attn_window == 8 for c in cells if c.variant == "attn_window=8")
    for variant in ("arch=decoder", "arch=encdec"):  # each variant keeps its own window of sizes per budget
        assert sum(c.variant == variant and c.budget_flops == 1e10 for c in cells) == 2


def test_a_size_may_carry_any_model_field_and_plain_sizes_keep_their_ids(tmp_path):
    study = study_file(
        tmp_path,
        """
def study():
    return Study(name="v", base=BASE, sizes=[{"d_model": 16}, {"d_model": 16, "arch": "encdec"}], budgets=[2e9],
                 min_steps=1)
""",
    )
    ids = [c.cell_id for c in expand(study, vocab_size=256)]
    assert ids == ["d16L2-C2e+09-s0", "d16L2-arch.encdec-C2e+09-s0"]


def test_a_variant_that_sets_a_size_is_refused(tmp_path):
    study = study_file(
        tmp_path,
        """
def study():
    return Study(name="v", base=BASE, sizes=[{"d_model": 16}], budgets=[2e9], variants=[{"d_model": 32}])
""",
    )
    with pytest.raises(ConfigError, match="sets a size field"):
        expand(study, vocab_size=256)


def synthetic_variants():
    """Two variants of a Chinchilla-like law with different exponents, on an N x D grid."""
    rows = []
    rng = np.random.default_rng(0)
    for variant, alpha in (("arch=decoder", 0.34), ("arch=encdec", 0.28)):
        for N in np.logspace(5, 7, 5):
            for D in np.logspace(7, 9, 5):
                L = (1.5 + 400 / N**alpha + 300 / D**0.3) * np.exp(rng.normal(0, 0.003))
                rows.append(
                    {
                        "variant": variant,
                        "arch": variant.split("=")[1],
                        "params_total": N,
                        "tokens": D,
                        "flops_exact": 6 * N * D,
                        "final_val_loss": L,
                        "status": "completed",
                    }
                )
    return pd.DataFrame(rows)


def test_fit_by_gives_one_law_per_variant(tmp_path, capsys):
    path = tmp_path / "results.csv"
    synthetic_variants().to_csv(path, index=False)
    fits = fit_groups(path, "arch", "parametric")
    assert set(fits) == {"decoder", "encdec"}
    assert fits["decoder"].params["alpha"] == pytest.approx(0.34, abs=0.03)
    assert fits["encdec"].params["alpha"] == pytest.approx(0.28, abs=0.03)
    assert main(["fit", str(path), "--by", "arch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["groups"]) == {"decoder", "encdec"} and out["by"] == "arch"
    assert main(["fit", str(path), "--by", "arch"]) == 0
    text = capsys.readouterr().out
    assert text.count("== arch = ") == 2
    assert main(["plot", str(path), "--by", "variant", "--out", str(tmp_path / "fig"), "--bootstrap", "0"]) == 0
    assert (tmp_path / "fig" / "by_variant_exponents.png").exists()
    exps = pd.read_csv(tmp_path / "fig" / "by_variant_exponents.csv")
    assert list(exps["group"]) == ["arch=decoder", "arch=encdec"]


def test_a_report_by_variant_fits_each_variant_and_pools_none(tmp_path):
    synthetic_variants().to_csv(tmp_path / "results.csv", index=False)
    assert main(["report", str(tmp_path), "--by", "variant", "--bootstrap", "20"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "one law per `variant`" in text and "no law is pooled" in text
    fits = json.loads((tmp_path / "fits.json").read_text())
    a = {v: f["a"] for v, f in fits["parametric"].items()}  # a = beta / (alpha + beta) of each generating law
    assert a["arch=decoder"] == pytest.approx(0.3 / 0.64, abs=0.05) and a["arch=encdec"] == pytest.approx(
        0.3 / 0.58, abs=0.05
    )
    assert text.count("| arch=decoder |") == 1 and "- isoflop: not fitted" in text  # an N x D grid has no budgets
    assert (tmp_path / "figures" / "by_variant_parametric_exponents.png").exists()


def test_grouping_by_a_column_that_pools_variants_says_so(tmp_path):
    table = synthetic_variants()
    windowed = table[table["arch"] == "decoder"].assign(variant="arch=decoder,attn_window=8")
    path = tmp_path / "results.csv"
    pd.concat([table, windowed]).to_csv(path, index=False)
    fits = fit_groups(path, "arch", "parametric")
    assert any(
        "pools 2 variants (arch=decoder, arch=decoder,attn_window=8): use --by variant" in w
        for w in fits["decoder"].warnings
    )
    assert not any("pools" in w for w in fits["encdec"].warnings)


def test_fit_by_a_missing_or_constant_column_is_one_line(tmp_path, capsys):
    path = tmp_path / "results.csv"
    synthetic_variants().assign(seed=0).to_csv(path, index=False)
    assert main(["fit", str(path), "--by", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    assert main(["fit", str(path), "--by", "seed"]) == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_an_empty_budget_column_is_no_budget_column():
    """An N x D study's results table has budget_flops, all empty: fits that need no budget still run."""
    from analysis.table import fit_data

    data = fit_data(synthetic_variants().assign(budget_flops=np.nan))
    assert data.budget is None and len(data) == 50


@pytest.mark.slow
def test_a_study_mixing_architectures_runs_and_fits_one_law_per_variant(tmp_path, capsys):
    """decoder, encdec and a windowed decoder in one study: distinct cells and rows, their model
    fields as columns, and `lab fit --by` gives one fit per variant."""
    (tmp_path / "mixed.py").write_text(
        textwrap.dedent(
            HEADER
            + """
def study():
    return Study(name="mixed", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], tokens=[4096, 8192, 16384],
                 min_steps=5, variants=[{"arch": "decoder"}, {"arch": "encdec"}, {"attn_window": 8}])
"""
        )
    )
    out = tmp_path / "out"
    assert (
        main(
            ["study", str(tmp_path / "mixed.py"), "--out", str(out), "--workers", "2", "--quiet", "--no-analysis"]
        )
        == 0
    )
    capsys.readouterr()  # the study's own summary line
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 18 and rows.cell_id.is_unique and (rows.status == "completed").all()
    assert set(rows.variant) == {"arch=decoder", "arch=encdec", "attn_window=8"}
    assert set(rows.arch) == {"decoder", "encdec"} and set(rows.attn_window) == {0, 8}
    assert main(["fit", str(out), "--by", "variant", "--method", "parametric", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert set(groups) == {"arch=decoder", "arch=encdec", "attn_window=8"}
    assert all("alpha" in g or "error" in g for g in groups.values())

"""python_stdlib: split stability, fingerprints, and the real corpus prepared from scratch."""

import sys

import numpy as np
import pytest

from lab.config import ConfigError, DataConfig
from lab.data import corpus as corpus_module
from lab.data import data_root, load_corpus, stdlib


def _no_rebuild(*args, **kwargs):
    raise AssertionError("the corpus was prepared again instead of read from its cache")


def make_tree(root, n=60, extra=""):
    """A fake stdlib: file0.py..file{n-1}.py (file31/32/33/43/47/56 hash to validation)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"file{i}.py").write_text(f"# module {i}\ndef f{i}(x):\n    return x * {i}  # é\n" + extra)
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "inner.py").write_text("import os\n")
    for skipped in ("test", "tests", "site-packages"):
        (root / skipped).mkdir(exist_ok=True)
        (root / skipped / "skipme.py").write_text("raise SystemExit\n")
    (root / "notes.txt").write_text("not python\n")
    return root


def test_split_is_a_pure_function_of_the_path_pinned():
    # pinned: these must never move, on any machine or Python version
    assert [stdlib.split_of(p) for p in ("ast.py", "asyncio/trsock.py", "encodings/cp437.py")] == [
        "validation"
    ] * 3
    assert [stdlib.split_of(p) for p in ("os.py", "json/__init__.py", "abc.py")] == ["train"] * 3
    frac = np.mean([stdlib.split_of(f"pkg{i % 97}/mod{i}.py") == "validation" for i in range(20_000)])
    assert 0.045 < frac < 0.055  # ~1 in 20


def test_listing_skips_test_dirs_and_is_sorted(tmp_path):
    make_tree(tmp_path)
    rels = [rel for rel, _ in stdlib.list_sources(tmp_path)]
    assert len(rels) == 61 and rels == sorted(rels)
    assert "pkg/inner.py" in rels and not any(r.split("/")[0] in ("test", "tests", "site-packages") for r in rels)


def _val_paths(corpus_cfg, fp):
    from lab.data import builders

    root = data_root(corpus_cfg)
    b = builders.PythonStdlib(
        source_dir=corpus_cfg.source_dir, data_dir=str(root / "tfds" / f"python_stdlib-{fp[:16]}")
    )
    assert b.fingerprint == fp  # the builder's metadata holds the same fingerprint
    return sorted(r["path"].decode() for r in b.as_data_source(split="validation"))


def test_fingerprint_stable_across_loads_and_preparations(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "src")
    cfg1 = DataConfig(source_dir=str(src), data_dir=str(tmp_path / "d1"))
    cfg2 = DataConfig(source_dir=str(src), data_dir=str(tmp_path / "d2"))  # a second, independent preparation
    a = load_corpus(cfg1)
    with monkeypatch.context() as m:  # the second load reads the cache: nothing is prepared again
        m.setattr(corpus_module, "_build", _no_rebuild)
        b = load_corpus(cfg1)
    c = load_corpus(cfg2)
    assert (
        a.tokens_fingerprint == b.tokens_fingerprint == c.tokens_fingerprint == f"{a.text_fingerprint[:16]}+byte"
    )
    assert a.n_docs == {"train": 55, "val": 6}
    expected_val = ["file31.py", "file32.py", "file33.py", "file43.py", "file47.py", "file56.py"]
    assert _val_paths(cfg1, a.text_fingerprint) == _val_paths(cfg2, c.text_fingerprint) == expected_val
    # the token stream is the files' bytes, in sorted path order, exactly
    files = stdlib.read_sources(src)
    train_bytes = b"".join(c for r, c in files if stdlib.split_of(r) == "train")
    val_bytes = b"".join(c for r, c in files if stdlib.split_of(r) == "validation")
    assert bytes(np.asarray(a.train, np.uint8)) == train_bytes and bytes(np.asarray(a.val, np.uint8)) == val_bytes
    assert a.vocab_size == 256 and a.bytes_per_token == 1.0 and a.entropy_nats_per_token is None


def test_fingerprint_changes_when_content_changes(tmp_path):
    src = make_tree(tmp_path / "src")
    cfg = DataConfig(source_dir=str(src), data_dir=str(tmp_path / "d"))
    before = load_corpus(cfg)
    (src / "file3.py").write_text("changed = True\n")
    after = load_corpus(cfg)
    assert after.text_fingerprint != before.text_fingerprint
    assert bytes(np.asarray(after.train, np.uint8)).count(b"changed = True") == 1
    (src / "file3.py").unlink()  # removing a file changes it too
    assert load_corpus(cfg).text_fingerprint not in (before.text_fingerprint, after.text_fingerprint)


def test_real_stdlib_prepares_without_tensorflow(tmp_path):
    """(Its preparation time is benchmarks/bench_data.py's, not a threshold here.)"""
    c = load_corpus(DataConfig(data_dir=str(tmp_path)))
    n_files = c.n_docs["train"] + c.n_docs["val"]
    assert n_files > 300 and 0.02 < c.n_docs["val"] / n_files < 0.09
    assert len(c.train) > 3_000_000 and 0.01 < len(c.val) / len(c.train) < 0.12
    assert c.tokens_fingerprint == f"{stdlib.source_fingerprint()[:16]}+byte"
    assert "tensorflow" not in sys.modules


def test_empty_corpus_or_split_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="0 .py files"):
        load_corpus(DataConfig(source_dir=str(tmp_path), data_dir=str(tmp_path / "d")))
    make_tree(tmp_path / "few", n=30)  # file0..file29 all hash to train
    with pytest.raises(ConfigError, match="0 of them in validation"):
        load_corpus(DataConfig(source_dir=str(tmp_path / "few"), data_dir=str(tmp_path / "d")))
    with pytest.raises(ConfigError, match="no split 'dev'"):
        load_corpus(
            DataConfig(source_dir=str(make_tree(tmp_path / "ok")), val_split="dev", data_dir=str(tmp_path / "d"))
        )
    with pytest.raises(ConfigError, match="not a directory"):
        load_corpus(DataConfig(source_dir=str(tmp_path / "missing"), data_dir=str(tmp_path / "d")))

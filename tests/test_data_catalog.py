"""`tfds:NAME` datasets go through the same path; tested offline with a locally defined builder."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

import lab.data.builders  # noqa: F401  (applies the tfds import shim before the class below)
from lab.config import ConfigError, DataConfig
from lab.data import load_corpus

DOCS = {
    "train": [f"sentence number {i}: the quick brown fox, ünïcödé {i * i}\n" for i in range(50)],
    "test": [f"held-out sentence number {i}: the quick brown fox €\n" for i in range(7)],
}


class LabTestTinyText(tfds.core.GeneratorBasedBuilder):
    """Registered as `lab_test_tiny_text`: a text feature `body`, splits train/test, like lm1b."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"body": tfds.features.Text(), "label": np.int64}),
        )

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(docs) for name, docs in DOCS.items()}

    def _generate_examples(self, docs):
        for i, text in enumerate(docs):
            yield i, {"body": text, "label": i}


def test_catalog_dataset_by_name(tmp_path):
    cfg = DataConfig(name="tfds:lab_test_tiny_text", text_key="body", data_dir=str(tmp_path))
    c = load_corpus(cfg)
    assert c.name == "tfds:lab_test_tiny_text" and c.vocab_size == 256 and c.tokenizer == "byte"
    assert c.n_docs == {"train": 50, "val": 7}  # no validation split: the default falls back to test
    # every document is there exactly once (TFDS shuffles record order deterministically)
    assert sorted(c.decode(c.val).splitlines(keepends=True)) == sorted(DOCS["test"])
    assert len(c.train) == sum(len(d.encode()) for d in DOCS["train"])
    assert c.bytes_per_token == 1.0 and c.entropy_nats_per_token is None
    again = load_corpus(cfg)
    assert again.tokens_fingerprint == c.tokens_fingerprint
    np.testing.assert_array_equal(again.train, c.train)
    # the version and split syntax of tfds names pass through
    sliced = load_corpus(
        DataConfig(
            name="tfds:lab_test_tiny_text:1.0.0",
            text_key="body",
            data_dir=str(tmp_path),
            train_split="train[:10]",
            val_split="test",
        )
    )
    assert sliced.n_docs == {"train": 10, "val": 7} and sliced.text_fingerprint != c.text_fingerprint


def test_catalog_bpe(tmp_path):
    cfg = DataConfig(
        name="tfds:lab_test_tiny_text",
        text_key="body",
        data_dir=str(tmp_path),
        tokenizer="bpe",
        bpe_vocab_size=300,
    )
    c = load_corpus(cfg)
    val = c.decode(c.val)
    assert sorted(val.splitlines(keepends=True)) == sorted(DOCS["test"])
    assert c.bytes_per_token == pytest.approx(len(val.encode()) / len(c.val)) and c.bytes_per_token > 1.5


def test_catalog_user_errors_are_one_line_config_errors(tmp_path):
    bad = [
        (DataConfig(name="tfds:no_such_dataset_xyz", data_dir=str(tmp_path)), "not found"),
        (DataConfig(name="tfds:lab_test_tiny_text:9.9.9", text_key="body", data_dir=str(tmp_path)), "9.9.9"),
        (DataConfig(name="tfds:lab_test_tiny_text", text_key="text", data_dir=str(tmp_path)), "no feature"),
        (DataConfig(name="tfds:lab_test_tiny_text", text_key="label", data_dir=str(tmp_path)), "not text"),
        (
            DataConfig(name="tfds:lab_test_tiny_text", text_key="body", val_split="dev", data_dir=str(tmp_path)),
            "no split",
        ),
        (DataConfig(name="wikipedia", data_dir=str(tmp_path)), "unknown dataset"),
    ]
    for cfg, msg in bad:
        with pytest.raises(ConfigError, match=msg) as e:
            load_corpus(cfg)
        assert "\n" not in str(e.value)


def test_no_tensorflow_and_concurrent_preparation_is_safe(tmp_path):
    """Two fresh processes prepare the same corpora at once: same tokens, no TensorFlow import."""
    script = textwrap.dedent(f"""
        import hashlib, sys
        from lab.config import DataConfig
        from lab.data import load_corpus
        out = []
        for name in ("synthetic/markov1", "python_stdlib"):
            c = load_corpus(DataConfig(name=name, data_dir={str(tmp_path)!r}))
            out.append(c.tokens_fingerprint + ":" + hashlib.sha256(bytes(c.train[:1000000])).hexdigest())
        print("|".join(out), "tensorflow" in sys.modules)
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for (_out, err), p in zip(results, procs):
        assert p.returncode == 0, err[-2000:]
    lines = [out.strip().splitlines()[-1] for out, _ in results]
    assert lines[0] == lines[1] and lines[0].endswith(" False")

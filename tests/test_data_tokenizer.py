"""Byte and BPE tokenization: exact round trips and exact bytes per token."""

import numpy as np
import pytest

from lab.config import ConfigError, DataConfig
from lab.data import corpus as corpus_module
from lab.data import load_corpus, stdlib
from lab.data import tokenizer as tk


def make_code(root, n=60):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "".join(
            f"def function_{i}_{j}(value, other=None):\n"
            f"    result = value + {j} * other  # naïve €\n"
            "    return result\n\n"
            for j in range(12)
        )
        (root / f"file{i}.py").write_text(f'"""Module {i}."""\nimport os\n\n' + body)
    return root


def test_byte_tokens_are_utf8_bytes():
    text = "x = 'é€😀'\n"
    ids = tk.encode_bytes([text.encode()])
    assert ids.dtype == np.uint16 and len(ids) == len(text.encode()) == 16
    assert tk.decode_bytes(ids) == text


def test_bpe_round_trip_bytes_per_token_and_cache(tmp_path, monkeypatch):
    src = make_code(tmp_path / "src")
    cfg = DataConfig(source_dir=str(src), data_dir=str(tmp_path / "d"), tokenizer="bpe", bpe_vocab_size=400)
    c = load_corpus(cfg)
    files = stdlib.read_sources(src)
    train = "".join(b.decode() for r, b in files if stdlib.split_of(r) == "train")
    val = "".join(b.decode() for r, b in files if stdlib.split_of(r) == "validation")
    assert c.tokenizer == "bpe400" and 256 < c.vocab_size <= 400 and int(np.max(c.train)) < c.vocab_size
    assert c.tokens_fingerprint.startswith(c.text_fingerprint[:16] + "+bpe400-")
    assert c.decode(c.val) == val and c.decode(c.train) == train  # lossless, non-ASCII included
    assert c.bytes_per_token == len(val.encode()) / len(c.val) and c.bytes_per_token > 2.0
    assert len(c.train) < len(train.encode()) / 2  # merges compress this repetitive code
    # second load: cached tokenizer and tokens, same fingerprint
    bpe_file = tmp_path / "d" / "bpe" / f"{c.text_fingerprint[:16]}-400.json"
    mtime = bpe_file.stat().st_mtime_ns
    with monkeypatch.context() as m:  # read from the cache: nothing is tokenized again

        def no_rebuild(*args, **kwargs):
            raise AssertionError("the corpus was tokenized again instead of read from its cache")

        m.setattr(corpus_module, "_build", no_rebuild)
        again = load_corpus(cfg)
    assert again.tokens_fingerprint == c.tokens_fingerprint and bpe_file.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.val, c.val)
    # a byte corpus of the same files is a different fingerprint with the same corpus part
    b = load_corpus(DataConfig(source_dir=str(src), data_dir=str(tmp_path / "d")))
    assert b.text_fingerprint == c.text_fingerprint and b.tokens_fingerprint != c.tokens_fingerprint
    assert c.bits_per_byte(2.0) == pytest.approx(2.0 / np.log(2) / c.bytes_per_token)


def test_deleted_bpe_file_is_retrained_not_trusted(tmp_path):
    src = make_code(tmp_path / "src", n=40)
    cfg = DataConfig(source_dir=str(src), data_dir=str(tmp_path / "d"), tokenizer="bpe", bpe_vocab_size=300)
    c = load_corpus(cfg)
    __import__("os").remove(c.tokenizer_path)
    again = load_corpus(cfg)
    assert again.decode(again.val) == c.decode(c.val)


def test_bpe_vocab_must_exceed_bytes(tmp_path):
    with pytest.raises(ConfigError, match="bpe_vocab_size"):
        load_corpus(DataConfig(tokenizer="bpe", bpe_vocab_size=200, data_dir=str(tmp_path)))

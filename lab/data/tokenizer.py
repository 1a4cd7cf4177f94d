"""Tokenizers: bytes (default) and byte-level BPE trained on the training split.

Byte tokens are the UTF-8 bytes themselves (vocab 256), so a loss in nats/token divided by ln 2
is bits/byte exactly. BPE (the `tokenizers` library: byte-level pre-tokenizer, so every string
round-trips and no token is unknown) is trained once per (corpus fingerprint, vocab size) and
cached as JSON; its own sha256 goes into the corpus fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lab.config import ConfigError


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def encode_bytes(docs: Iterable[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(docs), dtype=np.uint8).astype(np.uint16)


def decode_bytes(ids) -> str:
    return bytes(np.asarray(ids, dtype=np.uint8)).decode("utf-8", errors="replace")


def train_bpe(texts: Iterable[str], vocab_size: int, path: Path):
    """Train a byte-level BPE on `texts` and save it (atomically) to `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size <= 256:
        raise ConfigError(f"data.bpe_vocab_size={vocab_size} must exceed the 256 byte symbols")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)
    return tok


def load_bpe(path: str | os.PathLike):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def bpe_id(path: Path, vocab_size: int) -> str:
    """Tokenizer name for the fingerprint: vocab size and the saved file's own hash."""
    return f"bpe{vocab_size}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"


def encode_bpe(tok, texts: list[str]) -> np.ndarray:
    dtype = token_dtype(tok.get_vocab_size())
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast: no offsets, ~1.5x faster
    parts = [np.asarray(e.ids, dtype=dtype) for e in encode(texts)]
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def decode_bpe(tok, ids) -> str:
    return tok.decode([int(i) for i in ids])

"""`load_corpus(cfg) -> Corpus`: token streams for a run, cached on disk by fingerprint.

Layout under the data dir (DataConfig.data_dir, else $LAB_DATA_DIR, else ~/.cache/scaling-lab):

    tfds/                     TFDS data_dir (array_record files, dataset_info, metadata.json)
    bpe/<corpus fp>-<V>.json  trained BPE tokenizers
    tokens/<key>/             train.bin, val.bin (raw little-endian ids) + meta.json
    locks/<key>.lock          flock held while one process prepares a key

Preparation happens under the lock and lands by `os.replace` of a finished temp dir, so
concurrent processes never see (or write) a half-made cache; the second load memory-maps the
.bin files and reads one JSON (no TFDS import for python_stdlib or synthetic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lab.config import ConfigError, DataConfig
from lab.data import sources, tokenizer

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """Token streams of one corpus under one tokenizer (arrays may be read-only memmaps)."""

    name: str  # e.g. "python_stdlib", "synthetic/markov2", "tfds:lm1b"
    train: np.ndarray  # 1-D token ids (uint16, or int32 for vocabularies above 65536)
    val: np.ndarray  # 1-D token ids of the validation split
    vocab_size: int
    tokenizer: str  # "byte" | "bpe<V>" | "symbols" (synthetic)
    tokens_fingerprint: str  # "<text fp[:16]>+<tokenizer id>": identifies the token streams
    bytes_per_token: float  # UTF-8 bytes per token on the validation split (1.0 for bytes/symbols)
    entropy_nats_per_token: float | None = None  # exact irreducible loss (synthetic only)
    n_docs: dict = dataclasses.field(default_factory=dict)  # documents per split
    text_fingerprint: str = ""  # full sha256 of the corpus text alone, before tokenization
    tokenizer_path: str = ""  # the BPE JSON ("" for byte and symbol tokens)

    def decode(self, ids) -> str:
        if self.tokenizer.startswith("bpe"):
            return tokenizer.decode_bpe(tokenizer.load_bpe(self.tokenizer_path), ids)
        if self.tokenizer == "symbols":
            return " ".join(str(int(i)) for i in ids)
        return tokenizer.decode_bytes(ids)

    def bits_per_byte(self, nats_per_token: float) -> float:
        return nats_per_token / np.log(2) / self.bytes_per_token


def data_root(cfg: DataConfig) -> Path:
    root = cfg.data_dir or os.environ.get("LAB_DATA_DIR") or "~/.cache/scaling-lab"
    return Path(root).expanduser()


@contextlib.contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_corpus(cfg: DataConfig) -> Corpus:
    """Resolve, prepare (once), tokenize (once) and memory-map the corpus `cfg` names."""
    cfg.validate()
    root = data_root(cfg)
    src = sources.resolve(cfg, root)
    tok_tag = (
        "symbols" if src.kind == "symbols" else ("byte" if cfg.tokenizer == "byte" else f"bpe{cfg.bpe_vocab_size}")
    )
    key = f"{src.name.replace('/', '_').replace(':', '_')}-{src.fingerprint[:16]}-{tok_tag}"
    out = root / "tokens" / key
    corpus = _read_cache(out, root)
    if corpus is None:
        with file_lock(root / "locks" / f"{key}.lock"):
            corpus = _read_cache(out, root)
            if corpus is None:
                _build(cfg, src, tok_tag, root, out)
                corpus = _read_cache(out, root)
    return corpus


def _read_cache(out: Path, root: Path) -> Corpus | None:
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta.get("cache_version") != CACHE_VERSION:
        return None
    tok_path = meta["tokenizer_path"]
    if tok_path and (
        not Path(tok_path).exists()
        or tokenizer.bpe_id(Path(tok_path), meta["vocab_size_requested"]) != meta["tokenizer_id"]
    ):
        return None  # the BPE file these ids came from is gone or changed: re-tokenize
    arrays = {
        s: np.memmap(out / f"{s}.bin", dtype=meta["dtype"], mode="r", shape=(meta[f"n_{s}"],))
        for s in ("train", "val")
    }
    return Corpus(
        name=meta["name"],
        train=arrays["train"],
        val=arrays["val"],
        vocab_size=meta["vocab_size"],
        tokenizer=meta["tokenizer"],
        tokens_fingerprint=f"{meta['corpus_fingerprint'][:16]}+{meta['tokenizer_id']}",
        bytes_per_token=meta["bytes_per_token"],
        entropy_nats_per_token=meta["entropy_nats_per_token"],
        n_docs=meta["n_docs"],
        text_fingerprint=meta["corpus_fingerprint"],
        tokenizer_path=tok_path,
    )


def _build(cfg: DataConfig, src: sources.Source, tok_tag: str, root: Path, out: Path) -> None:
    docs = {s: src.read(s) for s in ("train", "val")}
    for s, d in docs.items():
        if not d or not any(len(x) for x in d):
            raise ConfigError(f"dataset {src.name!r} has an empty {s} split ({getattr(cfg, s + '_split', s)})")
    tok_path, tok_id, vocab = "", tok_tag, src.vocab_size
    if src.kind == "symbols":
        ids = {s: np.concatenate(d).astype(np.uint16) for s, d in docs.items()}
        val_bytes = len(ids["val"])  # one symbol counts as one byte
    else:
        val_bytes = sum(len(x) for x in docs["val"])
        if cfg.tokenizer == "byte":
            ids = {s: tokenizer.encode_bytes(d) for s, d in docs.items()}
        else:
            bpe_file = root / "bpe" / f"{src.fingerprint[:16]}-{cfg.bpe_vocab_size}.json"
            with file_lock(root / "locks" / f"{bpe_file.name}.lock"):
                bpe_file.parent.mkdir(parents=True, exist_ok=True)
                if bpe_file.exists():
                    bpe = tokenizer.load_bpe(bpe_file)
                else:
                    bpe = tokenizer.train_bpe((_text(x) for x in docs["train"]), cfg.bpe_vocab_size, bpe_file)
            ids = {s: tokenizer.encode_bpe(bpe, [_text(x) for x in d]) for s, d in docs.items()}
            tok_path, tok_id, vocab = (
                str(bpe_file),
                tokenizer.bpe_id(bpe_file, cfg.bpe_vocab_size),
                bpe.get_vocab_size(),
            )
    meta = {
        "cache_version": CACHE_VERSION,
        "name": src.name,
        "corpus_fingerprint": src.fingerprint,
        "tokenizer": tok_tag,
        "tokenizer_id": tok_id,
        "tokenizer_path": tok_path,
        "vocab_size": int(vocab),
        "vocab_size_requested": cfg.bpe_vocab_size,
        "dtype": np.dtype(ids["train"].dtype).str,
        "n_train": int(len(ids["train"])),
        "n_val": int(len(ids["val"])),
        "bytes_per_token": val_bytes / len(ids["val"]),
        "entropy_nats_per_token": src.entropy_nats_per_token,
        "n_docs": {s: len(d) for s, d in docs.items()},
        "val_bytes": val_bytes,
        "content_sha256": {s: hashlib.sha256(a.tobytes()).hexdigest() for s, a in ids.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for s, a in ids.items():
            a.astype(a.dtype.newbyteorder("<"), copy=False).tofile(tmp / f"{s}.bin")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if out.exists():  # a stale or unreadable cache (we hold the lock, so no one is writing it)
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _text(doc: bytes) -> str:
    return doc.decode("utf-8", errors="replace")

"""Where a corpus comes from: resolve `DataConfig.name` to a fingerprint and a split reader.

A `Source` knows its corpus fingerprint *before* anything is prepared (so a tokenized cache hit
never imports TFDS), and reads a split's documents through TFDS (`download_and_prepare` with
`file_format="array_record"`, then `as_data_source`) only when asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from collections.abc import Callable
from pathlib import Path

from lab.config import ConfigError, DataConfig
from lab.data import stdlib, synthetic

READ_CHUNK = 4096  # records per batched array_record read


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # as the user wrote it, normalised (e.g. "synthetic/markov1")
    fingerprint: str  # sha256 of the corpus content / definition and its splits
    kind: str  # "text" (documents are bytes) | "symbols" (documents are uint8 symbol arrays)
    read: Callable[[str], list]  # "train" | "val" -> documents
    vocab_size: int = 256
    entropy_nats_per_token: float | None = None


def _sha(*parts) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def resolve(cfg: DataConfig, root: Path) -> Source:
    if cfg.name == "python_stdlib":
        return _stdlib(cfg, root)
    if cfg.name == "synthetic" or cfg.name.startswith("synthetic/"):
        return _synthetic(cfg, root)
    if cfg.name.startswith("tfds:"):
        return _catalog(cfg, root)
    raise ConfigError(f"unknown dataset {cfg.name!r}: use python_stdlib, synthetic[/VARIANT] or tfds:NAME")


def _tfds():
    from lab.data import builders  # registers our builders; applies the tfds import shim

    builders.tfds.disable_progress_bar()
    return builders


def _split_names(cfg: DataConfig) -> dict[str, str]:
    return {"train": cfg.train_split, "val": cfg.val_split}


def _reader(make_builder: Callable, splits: dict[str, str], decode: Callable) -> Callable[[str], list]:
    """Prepare the builder once (lazily), then read whole splits as lists of documents."""
    state = {}

    def read(which: str) -> list:
        if "builder" not in state:
            state["builder"] = make_builder()
        return read_split(state["builder"], splits[which], decode)

    return read


def read_split(builder, split: str, decode: Callable) -> list:
    try:
        ds = builder.as_data_source(split=split)
    except (ValueError, KeyError) as e:
        have = ", ".join(builder.info.splits.keys())
        raise ConfigError(f"{builder.name} has no split {split!r} (splits: {have})") from e
    out = []
    for start in range(0, len(ds), READ_CHUNK):
        out += [decode(r) for r in ds.__getitems__(list(range(start, min(start + READ_CHUNK, len(ds)))))]
    return out


def _prepare(builder):
    # TFDS announces preparation with print(); the commands' own output stays clean.
    with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare(file_format="array_record")
    return builder


# ----------------------------------------------------------------------------- python_stdlib


def _stdlib(cfg: DataConfig, root: Path) -> Source:
    src_dir = cfg.source_dir or None
    if src_dir and not Path(src_dir).is_dir():
        raise ConfigError(f"data.source_dir={src_dir!r} is not a directory")
    files = stdlib.read_sources(src_dir)
    n_val = sum(stdlib.split_of(rel) == "validation" for rel, _ in files)
    if not files or n_val in (0, len(files)):
        where = src_dir or stdlib.stdlib_dir()
        raise ConfigError(
            f"{where} gives an empty split: {len(files)} .py files, "
            f"{n_val} of them in validation (1 in 20 by path hash)"
        )
    files_fp = stdlib.fingerprint(files)
    splits = _split_names(cfg)
    fp = files_fp if splits == {"train": "train", "val": "validation"} else _sha(files_fp, splits)

    def make_builder():
        b = _tfds().PythonStdlib(
            source_dir=src_dir,
            data_dir=str(root / "tfds" / f"python_stdlib-{files_fp[:16]}"),
            file_format="array_record",
        )
        _prepare(b)
        if b.fingerprint != files_fp:
            raise RuntimeError(f"{b.source_dir} changed while it was being prepared; load again")
        return b

    return Source("python_stdlib", fp, "text", _reader(make_builder, splits, lambda r: r["text"]))


# ----------------------------------------------------------------------------- synthetic


def _synthetic(cfg: DataConfig, root: Path) -> Source:
    _, _, variant_name = cfg.name.partition("/")
    variant_name = variant_name or synthetic.DEFAULT_VARIANT
    if variant_name not in synthetic.VARIANTS:
        raise ConfigError(f"unknown synthetic variant {variant_name!r} (have: {', '.join(synthetic.VARIANTS)})")
    if cfg.tokenizer != "byte":
        raise ConfigError("synthetic data is already tokens (its symbols); use data.tokenizer=byte")
    variant = synthetic.VARIANTS[variant_name]
    chain = synthetic.make_chain(variant.spec)
    splits = _split_names(cfg)
    fp = variant.fingerprint(chain)
    fp = fp if splits == {"train": "train", "val": "validation"} else _sha(fp, splits)

    def make_builder():
        b = _tfds().Synthetic(config=variant_name, data_dir=str(root / "tfds"), file_format="array_record")
        return _prepare(b)

    return Source(
        f"synthetic/{variant_name}",
        fp,
        "symbols",
        _reader(make_builder, splits, lambda r: r["tokens"]),
        vocab_size=variant.spec.vocab,
        entropy_nats_per_token=chain.entropy_rate,
    )


# ----------------------------------------------------------------------------- tfds catalog


def _catalog(cfg: DataConfig, root: Path) -> Source:
    tfds_name = cfg.name[len("tfds:") :]
    tfds = _tfds().tfds
    try:
        builder = tfds.builder(tfds_name, data_dir=str(root / "tfds"), file_format="array_record")
    except (ValueError, AssertionError) as e:  # DatasetNotFoundError, unknown config or version
        raise ConfigError(f"tfds:{tfds_name}: {str(e).strip().splitlines()[0]}") from e
    features = builder.info.features
    if features is None or cfg.text_key not in features.keys():
        have = ", ".join(features.keys()) if features is not None else "none"
        raise ConfigError(f"tfds:{tfds_name} has no feature data.text_key={cfg.text_key!r} (features: {have})")
    _prepare(builder)
    splits = _split_names(cfg)
    base = lambda s: s.split("[")[0]
    if (
        base(splits["val"]) not in builder.info.splits
        and splits["val"] == "validation"
        and "test" in builder.info.splits
    ):
        splits["val"] = "test"  # the default val split falls back to "test" (lm1b has no validation)
    for split in splits.values():
        if base(split) not in builder.info.splits:
            have = ", ".join(builder.info.splits.keys())
            raise ConfigError(
                f"tfds:{tfds_name} has no split {split!r} (splits: {have}); set data.train_split/val_split"
            )
    info = builder.info
    sizes = sorted((k, v.num_examples, v.num_bytes) for k, v in info.splits.items())
    fp = _sha(info.full_name, cfg.text_key, splits, sizes)

    def text(record) -> bytes:
        value = record[cfg.text_key]
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bytes):
            return value
        raise ConfigError(f"tfds:{tfds_name} feature {cfg.text_key!r} is not text (got {type(value).__name__})")

    return Source(f"tfds:{tfds_name}", fp, "text", _reader(lambda: builder, splits, text))

"""The lab's TFDS builders: `python_stdlib` and `synthetic` (registered on import).

Both write `array_record` files and are read with `builder.as_data_source()` or
`tfds.data_source(name, data_dir=...)`; TensorFlow is never imported. Nothing is downloaded.

    import lab.data.builders, tensorflow_datasets as tfds
    b = tfds.builder("synthetic/markov2", data_dir=d, file_format="array_record")
    b.download_and_prepare(); b.info.metadata["entropy_nats_per_token"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import sys

import numpy as np

try:
    import importlib_resources  # noqa: F401
except ImportError:
    # tfds 4.9.10 evaluates `importlib_resources.abc.Traversable` in `DatasetBuilder.code_path`
    # for any builder defined in a package, but declares the backport only for Python < 3.9.
    sys.modules["importlib_resources"] = importlib.resources

import tensorflow_datasets as tfds

from lab.data import stdlib, synthetic


class PythonStdlib(tfds.core.GeneratorBasedBuilder):
    """Standard-library `.py` files; features `text` (raw UTF-8 bytes) and `path` (relative)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Sorted .py files; 1-in-20 path-hash validation split."}

    def __init__(self, *, source_dir: str | None = None, **kwargs):
        self.source_dir = str(source_dir or stdlib.stdlib_dir())  # injectable for tests
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=stdlib.__doc__,
            features=tfds.features.FeaturesDict({"text": tfds.features.Text(), "path": tfds.features.Text()}),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # keep the sorted order, so the token stream is reproducible
        )

    @property
    def fingerprint(self) -> str:
        return self.info.metadata["fingerprint"]

    def _split_generators(self, dl_manager):
        files = stdlib.read_sources(self.source_dir)
        self.info.metadata.update(
            fingerprint=stdlib.fingerprint(files),
            split_rule=stdlib.SPLIT_RULE,
            n_files=len(files),
            n_bytes=sum(len(c) for _, c in files),
        )
        by_split = {"train": [], "validation": []}
        for rel, content in files:
            by_split[stdlib.split_of(rel)].append((rel, content))
        return {name: self._generate_examples(items) for name, items in by_split.items()}

    def _generate_examples(self, items):
        for rel, content in items:
            yield rel, {"text": content, "path": rel}


@dataclasses.dataclass(eq=False)
class MarkovConfig(tfds.core.BuilderConfig):
    """One synthetic variant (see `lab.data.synthetic.VARIANTS`)."""

    variant: synthetic.Variant = synthetic.VARIANTS[synthetic.DEFAULT_VARIANT]
    doc_len: int = 4096  # tokens per record; records are consecutive pieces of one path


class Synthetic(tfds.core.GeneratorBasedBuilder):
    """Paths of a seeded sparse Markov chain; the exact entropy rate is in `info.metadata`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Sparse Markov chains, exact lane sampler."}
    BUILDER_CONFIGS = [
        MarkovConfig(name=name, description=v.description, variant=v) for name, v in synthetic.VARIANTS.items()
    ]
    DEFAULT_CONFIG_NAME = synthetic.DEFAULT_VARIANT

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=synthetic.__doc__,
            features=tfds.features.FeaturesDict(
                {"tokens": tfds.features.Tensor(shape=(None,), dtype=np.uint8, encoding="zlib")}
            ),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # records in path order: concatenated, they are the chain
        )

    @property
    def chain(self) -> synthetic.MarkovChain:
        return synthetic.make_chain(self.builder_config.variant.spec)

    @property
    def entropy_rate(self) -> float:
        """Exact entropy rate, nats/token (also stored as metadata['entropy_nats_per_token'])."""
        return self.chain.entropy_rate

    @property
    def fingerprint(self) -> str:
        return self.info.metadata["fingerprint"]

    def _split_generators(self, dl_manager):
        variant, chain = self.builder_config.variant, self.chain
        seed = variant.spec.seed
        streams = {
            "train": synthetic.sample(chain, variant.train_tokens, seed=2 * seed),
            "validation": synthetic.sample(chain, variant.val_tokens, seed=2 * seed + 1),
        }
        self.info.metadata.update(
            fingerprint=variant.fingerprint(chain),
            entropy_nats_per_token=chain.entropy_rate,
            unigram_entropy_nats=chain.unigram_entropy,
            chain=dataclasses.asdict(variant.spec),
            sampler=synthetic.SAMPLER_VERSION,
            content_sha256={k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in streams.items()},
        )
        return {name: self._generate_examples(x, self.builder_config.doc_len) for name, x in streams.items()}

    def _generate_examples(self, stream, doc_len):
        for i in range(0, len(stream), doc_len):
            yield i // doc_len, {"tokens": stream[i : i + doc_len]}

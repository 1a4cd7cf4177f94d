"""The data layer: corpora as TFDS builders, tokenizers, and step-indexed batches.

    corpus = load_corpus(DataConfig(name="python_stdlib"))          # or "synthetic/markov2", "tfds:lm1b"
    x = train_batch(corpus.train, seed=0, step=s, batch_size=8, seq_len=128)   # int32 [8, 129]
    v = val_batches(corpus.val, batch_size=8, seq_len=128, n_tokens=1 << 16)  # int32 [n, 8, 129]

Modules: `stdlib` (file list, split rule, fingerprint), `synthetic` (Markov chains with exact
entropy rates), `builders` (the TFDS builders; imports tensorflow_datasets, never TensorFlow),
`sources` (name -> fingerprint + reader), `tokenizer` (bytes, BPE), `corpus` (`load_corpus` and
the on-disk token cache), `batches` (`train_batch`, `val_batches`), `recall` (the associative-recall
text of `lab.evals.icl` and of the training mixture `data.recall_mix`), `induction` (the in-context copy
task family of `lab.evals.induction` and of the training mixture `data.copy_mix`).
"""

from lab.data.batches import check_streams, repeat_fields, train_batch, val_batches
from lab.data.corpus import Corpus, data_root, load_corpus

__all__ = ["Corpus", "check_streams", "data_root", "load_corpus", "repeat_fields", "train_batch", "val_batches"]

"""The model: the transformer (`transformer`), its layers (`layers`), the attention kernels
(`attention`: the mask rule, dense and blockwise; `attention_chunked`: a few heads at a time with
flash attention's backward), the training objectives (`objectives`), weight-only quantization
(`quant`) and the unrolling of its scans for XLA's cost analysis (`unroll`).

`Transformer` is re-exported here for convenience; the code inside the repository imports it from
`lab.model.transformer`, where it is defined.
"""

from lab.model.transformer import Transformer

__all__ = ["Transformer"]

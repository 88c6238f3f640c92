"""Embedding workload: a BERT-sized table (50000 x 768 float32) looked up by a 32 x 512 batch of token ids.

Bytes count the looked-up rows read once, the indices read once and the output written once (100 MB in all).
"""

import torch.nn.functional as F

import nbops

from ..core import Case

V, D = 50000, 768
BATCH = (32, 512)


def _setup(rng, dtype):
    return rng.integers(0, V, size=BATCH).astype("int64"), rng.standard_normal((V, D)).astype(dtype)


M = BATCH[0] * BATCH[1]

CASES = [
    Case("embedding 50000x768, 32x512 ids", "embedding", _setup, nbops.embedding, F.embedding,
         bytes=8.0 * M * D + 8.0 * M),
]

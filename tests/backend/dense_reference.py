"""The naive dense path, kept only for the tests and the benchmark's comparison column.

It does what the official code does: a boolean N x N adjacency given to a masked softmax, and
attention scores formed whole. `dense_reference()` swaps it into the VAE for the duration of a
`with` block, so the same model code runs both ways.
"""

from __future__ import annotations

import contextlib

import torch

from backend.models import attention, vae


def dense_neighbour_attention(q, k, v, edges, scale):
    n = q.shape[0]
    mask = torch.zeros(n, n, dtype=torch.bool, device=q.device)
    if edges.numel():
        mask[edges[:, 0], edges[:, 1]] = True
    scores = (q @ k.T) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    # A row with no neighbour is all -inf: softmax gives NaN there; SDPA kernels give 0.
    weights = torch.nan_to_num(weights, nan=0.0)
    return weights @ v


@contextlib.contextmanager
def dense_reference():
    saved = vae.neighbour_attention, attention.SCORE_BLOCK_ELEMENTS
    vae.neighbour_attention = dense_neighbour_attention
    attention.SCORE_BLOCK_ELEMENTS = 1 << 62  # never split the queries into blocks
    try:
        yield
    finally:
        vae.neighbour_attention, attention.SCORE_BLOCK_ELEMENTS = saved

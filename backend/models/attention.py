"""Attention kernels with memory that grows linearly in the number of vertices.

Two shapes of attention appear in DyMeshVAE:

* neighbour attention: each vertex attends to its mesh neighbours. The official code builds a
  dense N x N boolean mask; we compute the same softmax over the edge list instead (a segment
  softmax), so memory is O(edges) and a vertex with no neighbour gets a zero output, as the
  masked SDPA kernels give.
* token <-> vertex cross-attention: K tokens against N vertices (or the reverse). Scores are
  formed one block of queries at a time so that no K x N matrix ever exists whole. An optional
  per-key additive bias lets one key stand for many identical ones (log of its multiplicity),
  which is how the official zero-padding is reproduced at no cost.
"""

from __future__ import annotations

import torch

# Upper bound on score-matrix elements formed at once (floats): 2**24 = 64 MiB in float32.
SCORE_BLOCK_ELEMENTS = 1 << 24
# Edges handled per step of the neighbour attention (bounds the gathered q/k/v copies).
EDGE_BLOCK = 1 << 16


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    key_bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + key_bias) v, computed over blocks of queries.

    q: (B, H, Lq, D), k: (B, H, Lk, D), v: (B, H, Lk, Dv), key_bias: (Lk,) or None.
    """
    lq, lk = q.shape[-2], k.shape[-2]
    rows = max(1, SCORE_BLOCK_ELEMENTS // max(1, lk * q.shape[0] * q.shape[1]))
    kt = k.transpose(-1, -2)
    if lq <= rows:
        return _attend(q, kt, v, scale, key_bias)
    out = q.new_empty(q.shape[:-1] + (v.shape[-1],))
    for start in range(0, lq, rows):
        out[..., start:start + rows, :] = _attend(q[..., start:start + rows, :], kt, v, scale,
                                                  key_bias)
    return out


def _attend(q, kt, v, scale, key_bias):
    scores = torch.matmul(q, kt).mul_(scale)
    if key_bias is not None:
        scores += key_bias
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def neighbour_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        edges: torch.Tensor, scale: float) -> torch.Tensor:
    """Single-head attention of every row i over the rows j with an edge (i, j).

    q, k: (N, D), v: (N, Dv), edges: (E, 2) int64 (receiver i, sender j). Rows without an edge
    get zeros. Equivalent to SDPA with a boolean N x N mask, without ever forming it.
    """
    n = q.shape[0]
    out = v.new_zeros(n, v.shape[-1])
    if edges.numel() == 0:
        return out
    recv, send = edges[:, 0], edges[:, 1]
    logits = torch.cat([(q[recv[s:s + EDGE_BLOCK]] * k[send[s:s + EDGE_BLOCK]]).sum(-1)
                        for s in range(0, edges.shape[0], EDGE_BLOCK)]) * scale
    # Segment softmax: subtract each receiver's max for stability (a constant per row, so no
    # gradient flows through it), normalise by the receiver's sum.
    row_max = torch.full((n,), float("-inf"), dtype=q.dtype, device=q.device)
    row_max = row_max.scatter_reduce(0, recv, logits.detach(), reduce="amax", include_self=True)
    weights = torch.exp(logits - row_max[recv])
    row_sum = torch.zeros(n, dtype=q.dtype, device=q.device).index_add(0, recv, weights)
    weights = weights / row_sum[recv]
    for s in range(0, edges.shape[0], EDGE_BLOCK):
        out.index_add_(0, recv[s:s + EDGE_BLOCK], v[send[s:s + EDGE_BLOCK]] * weights[s:s + EDGE_BLOCK, None])
    return out

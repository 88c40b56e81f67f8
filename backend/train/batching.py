"""Turning motion samples into padded training batches for DyMeshVAE.

Meshes in a batch have different vertex counts. They are padded to the largest one; padded rows
get a -inf attention bias so no token ever attends to them, and the edge lists of the samples
are offset into one disjoint graph over the flattened B*N rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import mesh as meshprep
from ..models.farthest_point_sampling import denormal_safe


@dataclass
class PreparedSample:
    """A sample normalised the way inference normalises a mesh (frame-0 box centre and size)."""

    frames: np.ndarray      # (T, N, 3) float32, normalised
    edges: np.ndarray       # (E, 2) int64
    captions: list[str]
    family: str | None
    scale: float            # normalisation denominator (original units per normalised unit)
    noun: str | None = None  # the noun its captions name the mesh with (procedural samples)


def prepare_sample(frames: np.ndarray, faces: np.ndarray, captions, family=None,
                   noun: str | None = None) -> PreparedSample:
    frames = np.asarray(frames, dtype=np.float32)
    center, denom = meshprep.normalize(frames[0])
    normed = ((frames - center) / denom).astype(np.float32)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    edges = meshprep.adjacency_edges(faces, frames.shape[1])
    return PreparedSample(normed, edges, list(captions), family, float(denom), noun)


@dataclass
class Batch:
    frames: torch.Tensor     # (B, T, Nmax, 3)
    edges: torch.Tensor      # (E, 2) into the flattened B*Nmax rows
    lengths: torch.Tensor    # (B,) real vertex counts
    mask: torch.Tensor       # (B, Nmax) True on real rows
    key_bias: torch.Tensor   # (B, 1, 1, Nmax): 0 on real rows, -inf on padding

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.frames, self.edges, self.lengths, self.mask, self.key_bias)))


def collate(samples: list[PreparedSample]) -> Batch:
    b = len(samples)
    t = samples[0].frames.shape[0]
    n_max = max(s.frames.shape[1] for s in samples)
    frames = torch.zeros(b, t, n_max, 3)
    mask = torch.zeros(b, n_max, dtype=torch.bool)
    edges = []
    for i, s in enumerate(samples):
        n = s.frames.shape[1]
        frames[i, :, :n] = torch.from_numpy(s.frames)
        mask[i, :n] = True
        edges.append(torch.from_numpy(s.edges) + i * n_max)
    key_bias = torch.zeros(b, 1, 1, n_max)
    key_bias.masked_fill_(~mask[:, None, None, :], float("-inf"))
    return Batch(frames, torch.cat(edges) if edges else torch.zeros(0, 2, dtype=torch.long),
                 mask.sum(1), mask, key_bias)


@torch.no_grad()
def batched_token_indices(features: torch.Tensor, lengths: torch.Tensor, k: int,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """FPS per sample over its real rows (start row 0, first index on ties), all samples at once.

    Slots beyond a sample's vertex count are filled with random real rows. Returns (B, K).
    """
    b, n, _ = features.shape
    x = denormal_safe(features.float())
    valid = torch.arange(n, device=x.device)[None] < lengths[:, None].to(x.device)
    min_dist = torch.full((b, n), float("inf"), device=x.device).masked_fill_(~valid, float("-inf"))
    picked = torch.zeros(b, k, dtype=torch.long, device=x.device)
    current = torch.zeros(b, dtype=torch.long, device=x.device)
    rows = torch.arange(b, device=x.device)
    for slot in range(k):
        picked[:, slot] = current
        dist = (x - x[rows, current][:, None]).square().sum(-1)
        min_dist = torch.minimum(min_dist, dist)
        current = torch.argmax(min_dist, dim=1)
    slots = torch.arange(k, device=x.device)[None]
    empty = slots >= lengths[:, None].to(x.device)
    random_rows = (torch.rand(b, k, generator=generator).to(x.device) * lengths[:, None].to(x.device)).long()
    return torch.where(empty, random_rows, picked)


def family_sampler(families: list[str | None], weights: dict[str, float]):
    """A function drawing `count` sample indices, clips of a weighted family `weight` times as often.

    Returns None without weights (uniform draws are cheaper). A weight names a motion family of
    the data; a name the data lacks is refused rather than silently ignored, since a typo would
    otherwise train the unweighted model the run was meant to replace.
    """
    if not weights:
        return None
    from ..errors import UserError
    from .loop import is_number

    present = sorted({f for f in families if f})
    unknown = sorted(set(weights) - set(present))
    if unknown:
        raise UserError(f"family_weights names {', '.join(unknown)}, which the dataset does not hold; "
                        f"its families are: {', '.join(present) or 'none (no family labels)'}.")
    bad = {k: v for k, v in weights.items() if not (is_number(v) and v > 0)}
    if bad:
        raise UserError(f"family_weights must be positive numbers; got {bad}.")
    probs = torch.tensor([float(weights.get(f, 1.0)) for f in families], dtype=torch.float64)
    probs /= probs.sum()

    def draw(count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(probs, count, replacement=True, generator=generator)

    return draw

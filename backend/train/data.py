"""Loading a dataset folder (shards written by `make-dataset` or the Blender exporter) for training."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError
from .batching import PreparedSample, prepare_sample


def load_prepared(data_dir: Path, T: int) -> list[PreparedSample]:
    """Every sample of the folder, resampled to T frames and normalised as at inference."""
    from ..data.sample import resample_frames
    from ..data.shards import iter_dataset

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"dataset folder {data_dir} not found; write one with "
                        "`python -m backend make-dataset --out DIR --count N --seed S`.")
    prepared = []
    for sample in iter_dataset(data_dir):
        frames = sample.frames if sample.frames.shape[0] == T else resample_frames(sample.frames, T)
        prepared.append(prepare_sample(frames, sample.faces, sample.captions, sample.family,
                                       sample.meta.get("noun")))
    if not prepared:
        raise UserError(f"{data_dir} holds no samples (no .npz shards).")
    print(f"loaded {len(prepared)} samples from {data_dir}", file=sys.stderr)
    return prepared

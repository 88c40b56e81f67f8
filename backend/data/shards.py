"""Dataset shards: many MotionSamples in one `.npz` file, numpy only, no pickle.

The format is the seam's (`aam_seam.shards`, where every key is documented), because shards are
written on both sides: here by the dataset tools, in Blender by `tools/blender_scene_to_shard.py`.
This module turns MotionSamples into the seam's records and back, and walks dataset folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from aam_seam import shards as shard_format
from aam_seam.codes import SeamError
from backend.data.errors import DatasetError
from backend.data.readers import read_anime, read_dymesh_bin
from backend.data.sample import MotionSample

SHARD_FORMAT = shard_format.SHARD_FORMAT
SHARD_VERSION = shard_format.SHARD_VERSION


def write_shard(path, samples: Iterable[MotionSample], compress: bool = False) -> Path:
    """Write samples to one shard file (atomically: a temporary file renamed into place).

    compress=True uses zip deflate (smaller, slower to read; positions compress only a little).
    """
    records = [{"frames": s.frames, "faces": s.faces, "captions": list(s.captions), "source": s.source,
                "family": s.family, "meta": s.meta} for s in samples]
    try:
        return shard_format.write_shard(path, records, compress=compress)
    except SeamError as exc:
        raise DatasetError(exc.message) from None


def read_shard(path) -> list[MotionSample]:
    """Read every sample of a shard written by `write_shard` or the Blender scene exporter."""
    try:
        records = shard_format.read_shard(path)
    except SeamError as exc:
        raise DatasetError(exc.message) from None
    return [MotionSample(**record) for record in records]


_SUFFIX_READERS = {".npz": read_shard, ".bin": lambda p: [read_dymesh_bin(p)],
                   ".anime": lambda p: [read_anime(p)]}


def iter_dataset(directory) -> Iterator[MotionSample]:
    """Every sample under `directory`: shards (.npz), DyMesh clips (.bin), DeformingThings4D clips
    (.anime), searched recursively in sorted path order. If the folder has a `dataset.json` listing
    its shards (as `procedural.write_dataset` writes), the shards are read in that order.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder. Fix: pass the folder that holds the dataset.")
    manifest = root / "dataset.json"
    files = None
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text()).get("shards")
        except (json.JSONDecodeError, AttributeError):
            listed = None
        if listed:
            files = [root / name for name in listed]
    if files is None:
        files = sorted(p for p in root.rglob("*") if p.suffix in _SUFFIX_READERS and p.is_file())
    if not files:
        raise DatasetError(f"{root}: no dataset files found (.npz shards, DyMesh .bin, .anime). "
                           "Fix: point at the folder the data was written to.")
    for f in files:
        yield from _SUFFIX_READERS[f.suffix](f)

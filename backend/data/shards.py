"""Dataset shards: many MotionSamples in one `.npz` file, numpy only, no pickle.

Format (version 1). Every key is a plain numpy array, so `np.load(..., allow_pickle=False)` reads
it and nothing in a shard can run code:

  format          0-d str   "aam-motion-shard"
  version         0-d int   1
  frame_counts    (S,) int64    T_i of each sample
  vertex_counts   (S,) int64    N_i
  face_counts     (S,) int64    F_i
  positions       (sum T_i*N_i, 3) float32   sample i's frames (T_i, N_i, 3) flattened in C order,
                                             samples one after another
  faces           (sum F_i, 3) int64         per-sample (0-based, local) triangle indices
  caption_counts  (S,) int64    C_i
  captions        (sum C_i,) str             all captions, sample by sample
  sources         (S,) str
  families        (S,) str      "" where has_family is False
  has_family      (S,) bool
  meta            (S,) str      JSON object per sample

Variable T, N, F and caption counts are handled by concatenation plus the count arrays (offsets
are their cumulative sums). The Blender exporter (`animateanymesh_addon/dataset_export.py`) writes
the same format with its own small numpy writer, because the add-on must not import the backend;
`tests/test_data_readers.py` checks that the two stay compatible.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from backend.data.errors import DatasetError
from backend.data.readers import read_anime, read_dymesh_bin
from backend.data.sample import MotionSample

SHARD_FORMAT = "aam-motion-shard"
SHARD_VERSION = 1
_KEYS = ("format", "version", "frame_counts", "vertex_counts", "face_counts", "positions", "faces",
         "caption_counts", "captions", "sources", "families", "has_family", "meta")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _str_array(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def write_shard(path, samples: Iterable[MotionSample], compress: bool = False) -> Path:
    """Write samples to one shard file (atomically: a temporary file renamed into place).

    compress=True uses zip deflate (smaller, slower to read; positions compress only a little).
    """
    samples = list(samples)
    path = Path(path)
    metas = []
    for s in samples:
        try:
            metas.append(json.dumps(s.meta, default=_json_default, sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{s.source}: meta cannot be stored as JSON ({exc}). Fix: keep meta "
                               "to numbers, strings, lists and dicts.") from None
    arrays = {
        "format": np.array(SHARD_FORMAT),
        "version": np.array(SHARD_VERSION, dtype=np.int64),
        "frame_counts": np.array([s.num_frames for s in samples], dtype=np.int64),
        "vertex_counts": np.array([s.num_vertices for s in samples], dtype=np.int64),
        "face_counts": np.array([len(s.faces) for s in samples], dtype=np.int64),
        "positions": (np.concatenate([s.frames.reshape(-1, 3) for s in samples]) if samples
                      else np.zeros((0, 3), np.float32)).astype(np.float32, copy=False),
        "faces": (np.concatenate([s.faces for s in samples]) if samples
                  else np.zeros((0, 3), np.int64)).astype(np.int64, copy=False),
        "caption_counts": np.array([len(s.captions) for s in samples], dtype=np.int64),
        "captions": _str_array([c for s in samples for c in s.captions]),
        "sources": _str_array([s.source for s in samples]),
        "families": _str_array([s.family or "" for s in samples]),
        "has_family": np.array([s.family is not None for s in samples], dtype=bool),
        "meta": _str_array(metas),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    os.replace(tmp, path)
    return path


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)])


def read_shard(path) -> list[MotionSample]:
    """Read every sample of a shard written by `write_shard` or the Blender exporter."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: not a motion shard (missing {', '.join(missing)}). "
                                   "Fix: write shards with backend.data.shards.write_shard or the "
                                   "add-on's dataset export.")
            data = {k: z[k] for k in _KEYS}
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such shard file.") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot be read as a motion shard ({exc}). Fix: the file is "
                           "truncated or not an .npz shard; write it again.") from None
    if str(data["format"]) != SHARD_FORMAT:
        raise DatasetError(f"{path}: format is {str(data['format'])!r}, expected {SHARD_FORMAT!r}.")
    if int(data["version"]) > SHARD_VERSION:
        raise DatasetError(f"{path}: shard version {int(data['version'])} is newer than this reader "
                           f"({SHARD_VERSION}). Fix: update the add-on/backend.")
    tc, nc, fc, cc = (data[k].astype(np.int64) for k in
                      ("frame_counts", "vertex_counts", "face_counts", "caption_counts"))
    s = len(tc)
    sizes_ok = (
        all(len(a) == s for a in (nc, fc, cc, data["sources"], data["families"],
                                  data["has_family"], data["meta"]))
        and len(data["positions"]) == int(np.sum(tc * nc))
        and len(data["faces"]) == int(fc.sum()) and len(data["captions"]) == int(cc.sum())
    )
    if not sizes_ok:
        raise DatasetError(f"{path}: the count arrays do not match the data arrays (corrupt shard). "
                           "Fix: write the shard again.")
    pos_off, face_off, cap_off = _offsets(tc * nc), _offsets(fc), _offsets(cc)
    samples = []
    for i in range(s):
        try:
            meta = json.loads(str(data["meta"][i]))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: sample {i} has unreadable meta JSON ({exc}).") from None
        frames = data["positions"][pos_off[i]:pos_off[i + 1]].reshape(int(tc[i]), int(nc[i]), 3)
        samples.append(MotionSample(
            frames=frames,
            faces=data["faces"][face_off[i]:face_off[i + 1]],
            captions=[str(c) for c in data["captions"][cap_off[i]:cap_off[i + 1]]],
            source=str(data["sources"][i]),
            family=str(data["families"][i]) if bool(data["has_family"][i]) else None,
            meta=meta,
        ))
    return samples


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

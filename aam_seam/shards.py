"""Motion shards: many animated meshes with captions in one `.npz`, numpy only, no pickle.

Written by the backend's dataset tools and by Blender's scene exporter (`tools/`), read by
training. Format (version 1); every key is a plain array, so nothing in a shard can run code:

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

A record is a dict: frames (T, N, 3), faces (F, 3), captions (list of str), source (str),
family (str or None), meta (dict).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .arrays import check_npz_size
from .atomic import write_atomically
from .codes import ErrorCode, SeamError

SHARD_FORMAT = "aam-motion-shard"
SHARD_VERSION = 1
# Shards pack many clips into one array, so they may be larger than one mesh; a header claiming
# more than this is refused before anything is allocated.
MAX_SHARD_ARRAY_BYTES = 2 * 1024**3
KEYS = ("format", "version", "frame_counts", "vertex_counts", "face_counts", "positions", "faces",
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


def _bad(message: str) -> SeamError:
    return SeamError(ErrorCode.BAD_DATASET, message)


def write_shard(path: str | os.PathLike, records: list[dict], compress: bool = False) -> Path:
    """Write records to one shard, atomically. compress=True: zip deflate (smaller, slower)."""
    path = Path(path)
    metas = []
    for r in records:
        try:
            metas.append(json.dumps(r.get("meta", {}), default=_json_default, sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise _bad(f"{r.get('source', '?')}: meta cannot be stored as JSON ({exc}). Fix: keep "
                       "meta to numbers, strings, lists and dicts.") from None
    frames = [np.asarray(r["frames"]) for r in records]
    faces = [np.asarray(r["faces"]).reshape(-1, 3) for r in records]
    arrays = {
        "format": np.array(SHARD_FORMAT),
        "version": np.array(SHARD_VERSION, dtype=np.int64),
        "frame_counts": np.array([f.shape[0] for f in frames], dtype=np.int64),
        "vertex_counts": np.array([f.shape[1] for f in frames], dtype=np.int64),
        "face_counts": np.array([len(f) for f in faces], dtype=np.int64),
        "positions": (np.concatenate([f.reshape(-1, 3) for f in frames]) if records
                      else np.zeros((0, 3))).astype(np.float32, copy=False),
        "faces": (np.concatenate(faces) if records else np.zeros((0, 3))).astype(np.int64, copy=False),
        "caption_counts": np.array([len(r["captions"]) for r in records], dtype=np.int64),
        "captions": _str_array([str(c) for r in records for c in r["captions"]]),
        "sources": _str_array([str(r["source"]) for r in records]),
        "families": _str_array([r.get("family") or "" for r in records]),
        "has_family": np.array([r.get("family") is not None for r in records], dtype=bool),
        "meta": _str_array(metas),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda fh: (np.savez_compressed if compress else np.savez)(fh, **arrays))


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)])


def read_shard(path: str | os.PathLike) -> list[dict]:
    """Every record of a shard; SeamError(bad_dataset) with the fix for anything unusable."""
    path = Path(path)
    if path.is_file():
        check_npz_size(path, MAX_SHARD_ARRAY_BYTES, ErrorCode.BAD_DATASET, "shard")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise _bad(f"{path}: not a motion shard (missing {', '.join(missing)}). Fix: write "
                           "shards with the backend's dataset tools or the Blender scene exporter.")
            data = {k: z[k] for k in KEYS}
    except SeamError:
        raise
    except FileNotFoundError:
        raise _bad(f"{path}: no such shard file.") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _bad(f"{path}: cannot be read as a motion shard ({exc}). Fix: the file is truncated "
                   "or not an .npz shard; write it again.") from None
    if str(data["format"]) != SHARD_FORMAT:
        raise _bad(f"{path}: format is {str(data['format'])!r}, expected {SHARD_FORMAT!r}.")
    if int(data["version"]) > SHARD_VERSION:
        raise _bad(f"{path}: shard version {int(data['version'])} is newer than this reader "
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
        raise _bad(f"{path}: the count arrays do not match the data arrays (corrupt shard). "
                   "Fix: write the shard again.")
    pos_off, face_off, cap_off = _offsets(tc * nc), _offsets(fc), _offsets(cc)
    records = []
    for i in range(s):
        try:
            meta = json.loads(str(data["meta"][i]))
        except json.JSONDecodeError as exc:
            raise _bad(f"{path}: sample {i} has unreadable meta JSON ({exc}).") from None
        records.append({
            "frames": data["positions"][pos_off[i]:pos_off[i + 1]].reshape(int(tc[i]), int(nc[i]), 3),
            "faces": data["faces"][face_off[i]:face_off[i + 1]],
            "captions": [str(c) for c in data["captions"][cap_off[i]:cap_off[i + 1]]],
            "source": str(data["sources"][i]),
            "family": str(data["families"][i]) if bool(data["has_family"][i]) else None,
            "meta": meta,
        })
    return records

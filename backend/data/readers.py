"""Readers for public animated-mesh datasets, each returning a `MotionSample`.

- DyMesh (the official AnimateAnyMesh dataset): one pickled dict per clip with `vertices`
  (T, N, 3), `faces` (M, 3) and an optional `caption`. Pickle can run arbitrary code while it
  loads, so these files go through `SafeUnpickler`, which only rebuilds plain containers, numbers,
  strings and numpy arrays and refuses every other global before looking it up.
- DeformingThings4D `.anime`: a small binary format (see `read_anime`); the caption comes from the
  clip's folder name (`bear3EP_Jump` -> "a bear jumps").
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np

from backend.data.captions import caption_from_clip_name
from backend.data.errors import DatasetError, UnsafePickleError
from backend.data.sample import MotionSample

# ---------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------


def _latin1_bytes(text, encoding):
    """Stand-in for `_codecs.encode`: protocol 0-2 pickles store bytes as ('...', 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(
            f"the pickle asked _codecs.encode for {encoding!r}; only the latin1 bytes encoding "
            "that old pickle protocols use for raw bytes is allowed."
        )
    return text.encode("latin-1")


def _plain_bytes(*args):
    """Stand-in for `builtins.bytes`: old protocols pickle b"" as bytes(). No int argument, so a
    file cannot ask for a huge zero-filled buffer."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (list, tuple, bytes, bytearray)):
        return bytes(args[0])
    raise UnsafePickleError("the pickle called bytes() with arguments other than a byte list.")


def _numpy_module(*names: str):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names} can be imported")


def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only globals a dataset pickle may name: what numpy arrays and dtypes pickle to.

    numpy 1.x writes `numpy.core.*`, numpy 2.x writes `numpy._core.*`; both spellings resolve to
    the functions of whichever numpy is installed, so files from either version load.
    """
    multiarray = _numpy_module("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = _numpy_module("numpy._core.numeric", "numpy.core.numeric")
    table: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("builtins", "bytes"): _plain_bytes,
        # protocols 0-3 spell these through globals; they only build plain values
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar  # numpy scalars (np.float32(1))
        if hasattr(numeric, "_frombuffer"):  # protocol 5 arrays
            table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that admits dicts, lists, tuples, sets, strings, bytes, numbers, bools, None
    and numpy arrays/dtypes/scalars, and nothing else.

    Plain containers and scalars are built by pickle opcodes without naming any global; every
    other object must be looked up through `find_class`, which answers only from a fixed table and
    raises UnsafePickleError for anything else *before* importing it, so a malicious file
    (`os.system` through `__reduce__`, `builtins.eval`, ...) never gets to run. Object-dtype numpy
    arrays stay safe because their elements are unpickled through the same table.
    """

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 numpy pickles decode too
        self._source = source
        self._table = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._table[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to load: the pickle asks for {module}.{name}, but a "
                "dataset file may only contain dicts, lists, strings, numbers and numpy arrays. "
                "Nothing from the file was run. Fix: only use dataset files from a source you "
                "trust, re-saved as plain dicts of numpy arrays."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"{self._source}: refused to load: the pickle uses persistent ids (as torch.save does). "
            "Fix: convert the file to a plain dict of numpy arrays."
        )


def safe_load_pickle(data: bytes, source: str = "<pickle>"):
    """Unpickle bytes with `SafeUnpickler`; errors become DatasetError naming the file."""
    try:
        return SafeUnpickler(io.BytesIO(data), source=source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as exc:
        raise DatasetError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc}). Fix: the file is "
            "truncated or not a DyMesh .bin file; download or export it again."
        ) from None


# ---------------------------------------------------------------------------------------------
# DyMesh .bin
# ---------------------------------------------------------------------------------------------


def _captions_from_value(value, source: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        value = value.reshape(-1).tolist()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in value):
        out = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
        return [c.strip() for c in out if c.strip()]
    raise DatasetError(f"{source}: 'caption' is {type(value).__name__}, expected a string or a "
                       "list of strings.")


def read_dymesh_bin(path) -> MotionSample:
    """Read one DyMesh clip: a pickled dict with `vertices` (T, N, 3), `faces` (M, 3) and an
    optional `caption` (a string or a list of strings; missing -> no captions).

    The file is loaded with `SafeUnpickler` (a file that tries to run code raises
    UnsafePickleError). A single (N, 3) vertex array is read as a one-frame clip. Face rows holding
    a negative index are padding (the official loader pads faces with -1) and are dropped. All
    frames are returned: resample with `resample_frames` (the official loader keeps the first 16).
    """
    path = Path(path)
    source = f"dymesh:{path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror}).") from None
    obj = safe_load_pickle(data, source=str(path))
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: holds a {type(obj).__name__}, expected a dict with "
                           "'vertices' and 'faces'. Fix: pass a DyMesh .bin clip.")
    missing = [k for k in ("vertices", "faces") if k not in obj]
    if missing:
        raise DatasetError(f"{path}: the dict has no {', '.join(repr(m) for m in missing)} "
                           f"(keys: {sorted(map(str, obj))}). Fix: pass a DyMesh .bin clip.")
    try:
        vertices = np.asarray(obj["vertices"], dtype=np.float32)
        faces = np.asarray(obj["faces"])
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: 'vertices'/'faces' are not numeric arrays ({exc}).") from None
    if vertices.ndim == 2:
        vertices = vertices[None]
    if faces.ndim == 2 and faces.shape[1] == 3 and np.issubdtype(faces.dtype, np.integer):
        faces = faces[np.all(faces >= 0, axis=1)]
    meta = {"path": str(path)}
    extra = sorted(str(k) for k in obj if k not in ("vertices", "faces", "caption"))
    if extra:
        meta["extra_keys"] = extra
    return MotionSample(frames=vertices, faces=faces,
                        captions=_captions_from_value(obj.get("caption"), str(path)),
                        source=source, meta=meta)


# ---------------------------------------------------------------------------------------------
# DeformingThings4D .anime
# ---------------------------------------------------------------------------------------------

_ANIME_HEADER = np.dtype("<i4")


def read_anime(path, caption: str | None = None) -> MotionSample:
    """Read a DeformingThings4D `.anime` clip.

    Layout (little-endian): int32 nf, nv, nt; float32 frame-0 positions (nv x 3); int32 triangles
    (nt x 3); float32 offsets of frames 1..nf-1 relative to frame 0 ((nf-1) x nv x 3). Frame t is
    frame 0 + offset t. The file size must match the header exactly (a shorter file is truncated,
    a longer one is not an .anime file). The caption defaults to one derived from the clip name
    (`caption_from_clip_name`: the parent folder, e.g. `bear3EP_Jump` -> "a bear jumps").
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror}).") from None
    if len(data) < 12:
        raise DatasetError(f"{path}: {len(data)} bytes is too short for the 12-byte .anime header "
                           "(nf, nv, nt). Fix: the file is truncated; copy or download it again.")
    nf, nv, nt = (int(x) for x in np.frombuffer(data, dtype=_ANIME_HEADER, count=3))
    if nf < 1 or nv < 1 or nt < 0:
        raise DatasetError(f"{path}: header says {nf} frames, {nv} vertices, {nt} triangles; "
                           "expected nf >= 1, nv >= 1, nt >= 0. Fix: pass a DeformingThings4D "
                           ".anime file.")
    expected = 12 + 12 * nv + 12 * nt + 12 * (nf - 1) * nv
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(
            f"{path}: the file is {what}: header (nf={nf}, nv={nv}, nt={nt}) needs {expected} "
            f"bytes, the file has {len(data)}. Fix: copy or download the clip again."
        )
    off = 12
    rest = np.frombuffer(data, dtype="<f4", count=nv * 3, offset=off).reshape(nv, 3)
    off += 12 * nv
    faces = np.frombuffer(data, dtype="<i4", count=nt * 3, offset=off).reshape(nt, 3)
    off += 12 * nt
    offsets = np.frombuffer(data, dtype="<f4", count=(nf - 1) * nv * 3, offset=off)
    frames = np.empty((nf, nv, 3), dtype=np.float32)
    frames[0] = rest
    frames[1:] = rest[None] + offsets.reshape(nf - 1, nv, 3)
    name = path.parent.name if "_" in path.parent.name else path.stem
    captions = [caption] if caption else [caption_from_clip_name(name)]
    return MotionSample(frames=frames, faces=faces.astype(np.int64), captions=captions,
                        source=f"dt4d:{path}", meta={"path": str(path), "clip": name})


def write_anime(path, frames: np.ndarray, faces: np.ndarray) -> None:
    """Write frames (nf, nv, 3) and triangles (nt, 3) as a DeformingThings4D `.anime` file.

    The inverse of `read_anime`; used to make test clips and to export data for tools that read
    the format.
    """
    frames = np.asarray(frames, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4").reshape(-1, 3)
    nf, nv, _ = frames.shape
    with open(path, "wb") as fh:
        fh.write(np.array([nf, nv, len(faces)], dtype="<i4").tobytes())
        fh.write(frames[0].tobytes())
        fh.write(faces.tobytes())
        fh.write((frames[1:] - frames[0][None]).astype("<f4").tobytes())

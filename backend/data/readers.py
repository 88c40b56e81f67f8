"""Readers for public animated-mesh datasets, each returning a `MotionSample`.

- DyMesh (the official AnimateAnyMesh dataset): one pickled dict per clip with `vertices`
  (T, N, 3), `faces` (M, 3) and an optional `caption`. Pickle can run arbitrary code while it
  loads, so these files go through `SafeUnpickler`, which only rebuilds plain containers, numbers,
  strings and numpy arrays and refuses every other global before looking it up. Arrays are
  bounded too: object arrays are refused, and every declared size is checked against the bytes
  the file holds and a limit before numpy allocates anything.
- DeformingThings4D `.anime`: a small binary format (see `read_anime`); the caption comes from the
  clip's folder name (`bear3EP_Jump` -> "a bear jumps").
"""

from __future__ import annotations

import importlib
import io
import math
import operator
import pickle
from pathlib import Path

import numpy as np

from aam_seam.arrays import MAX_ARRAY_BYTES
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


# One array of a clip is frames x vertices x 3 float32: 512 MiB is 44M vertex-frames, far beyond
# any DyMesh clip, and the bound the .npz mesh and result files have. The pickle memo lets one
# stored byte string back many arrays, so the arrays of one file are bounded together as well, and
# a file larger than that cannot be a clip either.
MAX_CLIP_BYTES = 2 * MAX_ARRAY_BYTES

# bool, integers, floats, complex, bytes and str: all a clip needs. Object arrays are refused
# (numpy fills them from a list and crashes the process when the list is shorter than the shape),
# and structured, void and datetime dtypes would only widen what numpy has to parse.
_PLAIN_KINDS = "biufcSU"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 1024**2:,.0f} MiB"


def _describe(shape: tuple[int, ...], dt: np.dtype) -> str:
    if not shape:
        return f"a single {dt} value"
    return f"a {' x '.join(map(str, shape))} {dt} array"


class _ArrayBudget:
    """What one file's arrays may cost; every array the pickle builds is checked here first."""

    def __init__(self, source: str):
        self.source = source
        self.claimed = 0

    def refuse(self, what: str, fix: str) -> DatasetError:
        return DatasetError(f"{self.source}: refused to load: {what}. Fix: {fix}")

    def dtype(self, spec) -> np.dtype:
        """A fresh dtype for an array the pickle is building; `_DtypeSpec` explains why fresh."""
        if not isinstance(spec, _DtypeSpec):
            raise self.refuse(f"the pickle gives a {type(spec).__name__} where a numpy dtype "
                              "belongs", "pass a DyMesh .bin clip saved with pickle and numpy.")
        dt = spec.build(self)
        if dt.hasobject:
            raise self.refuse("the pickle holds a numpy object array (dtype object), which a "
                              "dataset clip never needs and numpy cannot rebuild safely",
                              "re-save the clip with 'vertices' and 'faces' as numeric arrays.")
        if dt.kind not in _PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise self.refuse(f"the pickle holds a numpy array of dtype {dt}; only plain number, "
                              "bool and string arrays are read",
                              "re-save the clip with 'vertices' and 'faces' as numeric arrays.")
        return dt

    def shape(self, shape) -> tuple[int, ...]:
        try:
            dims = tuple(operator.index(d) for d in shape)
        except TypeError:
            dims = None
        if dims is None or any(d < 0 for d in dims) or len(dims) > 32:
            raise self.refuse(f"the pickle declares an array of shape {shape!r}",
                              "the file is damaged or not a DyMesh .bin clip; export it again.")
        return dims

    def claim(self, shape: tuple[int, ...], dt: np.dtype) -> int:
        """The bytes the array will hold, once they fit the limits (before numpy sees the shape)."""
        nbytes = math.prod(shape) * dt.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise self.refuse(
                f"the pickle declares {_describe(shape, dt)} ({_mib(nbytes)}), more than the {_mib(MAX_ARRAY_BYTES)} one array of a clip "
                "may hold", "split the clip into shorter clips or fewer vertices, or check that "
                "the file is a DyMesh .bin clip.")
        if self.claimed + nbytes > MAX_CLIP_BYTES:
            raise self.refuse(
                f"the pickle's arrays add up to more than {_mib(MAX_CLIP_BYTES)}",
                "split the clip into shorter clips or fewer vertices, or check that the file is "
                "a DyMesh .bin clip.")
        self.claimed += nbytes
        return nbytes

    def data(self, raw, nbytes: int, shape, dt) -> None:
        """The array's bytes are in the file, exactly as many as its header says."""
        if not isinstance(raw, (bytes, bytearray, str)):
            raise self.refuse(f"the data of a {dt} array is a {type(raw).__name__}, not bytes",
                              "the file is damaged or not a DyMesh .bin clip; export it again.")
        if len(raw) != nbytes:
            raise self.refuse(
                f"the pickle declares {_describe(shape, dt)} ({nbytes} bytes) but holds "
                f"{len(raw)} bytes for it",
                "the file is truncated or damaged; download or export it again.")


class _DtypeSpec:
    """What a pickle says about a dtype, kept as data until an array needs it.

    numpy lets `dtype.__setstate__` change a dtype in place, so a pickle could hand a dtype to an
    array and then BUILD it again into one with object fields, turning the array's bytes into
    object pointers. Arrays therefore never get the object the pickle can reach: `build` makes a
    fresh dtype from the spelling and the byte order alone, and refuses any other state (fields,
    subarrays, metadata), which a plain number or string dtype does not have.
    """

    def __init__(self, spelling=None, align=False, copy=False):
        self.spelling = spelling
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def build(self, budget: _ArrayBudget) -> np.dtype:
        plain = self.state is None or (
            isinstance(self.state, tuple) and len(self.state) <= 9
            and all(v is None or isinstance(v, int) or (isinstance(v, str) and len(v) == 1)
                    for v in self.state))
        if not isinstance(self.spelling, str) or not plain:
            raise budget.refuse(f"the pickle holds a structured or unusual numpy dtype "
                                f"({self.spelling!r})",
                                "re-save the clip with 'vertices' and 'faces' as numeric arrays.")
        try:
            dt = np.dtype(self.spelling)
        except (TypeError, ValueError):
            raise budget.refuse(f"the pickle names an unknown numpy dtype {self.spelling!r}",
                                "the file is damaged or not a DyMesh .bin clip; export it "
                                "again.") from None
        order = next((v for v in self.state or () if isinstance(v, str)), None)
        if order in ("<", ">") and dt.byteorder != "|":
            dt = dt.newbyteorder(order)
        return dt


class _BoundedArray(np.ndarray):
    """The array `_reconstruct` hands the pickle: its `__setstate__` (what BUILD calls, with the
    shape, dtype and bytes) checks all three before numpy allocates anything."""

    _budget: _ArrayBudget

    def __reduce_ex__(self, protocol):
        return self.view(np.ndarray).__reduce_ex__(protocol)  # pickled again, a plain array

    def __setstate__(self, state):
        budget = self._budget
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise budget.refuse("an array's pickled state is not numpy's",
                                "the file is damaged or not a DyMesh .bin clip; export it again.")
        shape, spec, fortran, raw = state[-4:]
        dt = budget.dtype(spec)
        shape = budget.shape(shape)
        nbytes = budget.claim(shape, dt)
        budget.data(raw, nbytes, shape, dt)
        super().__setstate__((1, shape, dt, bool(fortran), raw))


class _ArrayBuilders:
    """Stand-ins for the numpy functions a pickled array names, each bounded by one budget."""

    def __init__(self, budget: _ArrayBudget):
        self.budget = budget
        self.multiarray = _numpy_module("numpy._core.multiarray", "numpy.core.multiarray")

    def _guarded(self, array: np.ndarray) -> _BoundedArray:
        out = array.view(_BoundedArray)
        out._budget = self.budget
        return out

    def reconstruct(self, subtype, shape=None, typecode=None):
        """numpy writes `_reconstruct(ndarray, (0,), b'b')` and sets the real shape, dtype and
        bytes through BUILD; the shape and type given here are ignored, so the empty array is
        all that is ever allocated before the checks."""
        if not isinstance(subtype, _NdarrayName):
            raise self.budget.refuse(f"the pickle rebuilds an array as {subtype!r}",
                                     "pass a DyMesh .bin clip saved with pickle and numpy.")
        return self._guarded(self.multiarray._reconstruct(np.ndarray, (0,), b"b"))

    def frombuffer(self, buffer, spec, shape, order="C"):
        """Protocol 5 arrays: the bytes come with the call, checked like BUILD's."""
        dt = self.budget.dtype(spec)
        shape = self.budget.shape(shape)
        nbytes = self.budget.claim(shape, dt)
        self.budget.data(buffer, nbytes, shape, dt)
        if order not in ("C", "F"):
            raise self.budget.refuse(f"an array's memory order is {order!r}",
                                     "the file is damaged or not a DyMesh .bin clip.")
        array = np.frombuffer(buffer, dtype=dt).reshape(shape, order=order)
        return self._guarded(array)  # a later BUILD on it goes through the same checks

    def scalar(self, spec, data=None):
        """numpy scalars (np.float32(1)): their bytes must come with the call, since numpy
        allocates and zeroes the dtype's whole size when they do not."""
        dt = self.budget.dtype(spec)
        self.budget.claim((), dt)
        if isinstance(data, str):  # Python 2 pickles, decoded as latin1
            data = data.encode("latin-1")
        if not isinstance(data, bytes) or len(data) < dt.itemsize:
            raise self.budget.refuse(f"a numpy {dt} scalar comes without its bytes",
                                     "the file is damaged or not a DyMesh .bin clip.")
        return self.multiarray.scalar(dt, data)


class _NdarrayName:
    """What `numpy.ndarray` resolves to: only a name for `reconstruct` to recognise. The real
    class would let a pickle call ndarray(shape, dtype) and allocate any size."""

    def __init__(self, budget: _ArrayBudget):
        self.budget = budget

    def __call__(self, *args, **kwargs):
        raise self.budget.refuse("the pickle calls numpy.ndarray(...) itself, which numpy's own "
                                 "pickles never do", "the file is damaged or not a DyMesh .bin "
                                 "clip; export it again.")

    def __repr__(self):
        return "numpy.ndarray"


def _allowed_globals(builders: _ArrayBuilders) -> dict[tuple[str, str], object]:
    """The only globals a dataset pickle may name: what numpy arrays and dtypes pickle to.

    numpy 1.x writes `numpy.core.*`, numpy 2.x writes `numpy._core.*`; both spellings resolve to
    the same bounded stand-ins, so files from either version load.
    """
    table: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): _NdarrayName(builders.budget),
        ("numpy", "dtype"): _DtypeSpec,
        ("_codecs", "encode"): _latin1_bytes,
        ("builtins", "bytes"): _plain_bytes,
        # protocols 0-3 spell these through globals; they only build plain values
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
    }
    # Protocols 0-2 spell builtins as Python 2's __builtin__ (as pickle's fix_imports does), and
    # overriding find_class skips that mapping, so both spellings are listed.
    for (module, name), value in list(table.items()):
        if module == "builtins":
            table[("__builtin__", name)] = value
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = builders.reconstruct
        table[(f"{core}.multiarray", "scalar")] = builders.scalar  # numpy scalars (np.float32(1))
        table[(f"{core}.numeric", "_frombuffer")] = builders.frombuffer  # protocol 5 arrays
    return table


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that admits dicts, lists, tuples, sets, strings, bytes, numbers, bools, None
    and numpy arrays/dtypes/scalars, and nothing else.

    Plain containers and scalars are built by pickle opcodes without naming any global; every
    other object must be looked up through `find_class`, which answers only from a fixed table and
    raises UnsafePickleError for anything else *before* importing it, so a malicious file
    (`os.system` through `__reduce__`, `builtins.eval`, ...) never gets to run. numpy arrays,
    dtypes and scalars are built by the bounded stand-ins above: object arrays are refused, and
    every array's shape is checked against its bytes and the size limits before numpy allocates.
    """

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 numpy pickles decode too
        self._source = source
        self._table = _allowed_globals(_ArrayBuilders(_ArrayBudget(source)))

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
    """Unpickle bytes with `SafeUnpickler`; errors become DatasetError naming the file.

    A dict's values that are arrays or dtypes come back as plain ndarrays and dtypes; deeper
    arrays keep the bounded subclass (an ndarray) and deeper dtypes stay `_DtypeSpec`s.
    """
    try:
        obj = SafeUnpickler(io.BytesIO(data), source=source).load()
    except DatasetError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError) as exc:
        raise DatasetError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc}). Fix: the file is "
            "truncated or not a DyMesh .bin file; download or export it again."
        ) from None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, _BoundedArray):
                obj[key] = value.view(np.ndarray)
            elif isinstance(value, _DtypeSpec):
                try:
                    obj[key] = value.build(_ArrayBudget(source))
                except DatasetError:
                    pass  # an unusual dtype stored beside the clip does not make it unreadable
    return obj


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


def _elements_asarray_would_make(value) -> int:
    """How many elements np.asarray(value) allocates, counted without allocating: numpy refuses
    ragged nesting, so the first item at each depth gives the shape it would build. Counting
    matters because the pickle memo can repeat one array in a list many times at no cost."""
    count = 1
    while isinstance(value, (list, tuple)):
        if not value:
            return 0
        count *= len(value)
        value = value[0]
    return count * (value.size if isinstance(value, np.ndarray) else 1)


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
        size = path.stat().st_size
        if size > MAX_CLIP_BYTES:
            raise DatasetError(f"{path}: refused to load: the file is {_mib(size)}, more than the "
                               f"{_mib(MAX_CLIP_BYTES)} a DyMesh clip may be. Fix: split it into "
                               "shorter clips, or check that it is a DyMesh .bin clip.")
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
    for key, itemsize in (("vertices", 4), ("faces", 8)):  # float32 vertices, int64 face lists
        nbytes = _elements_asarray_would_make(obj[key]) * itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise DatasetError(f"{path}: refused to load: {key!r} would take {_mib(nbytes)} as an "
                               f"array, more than the {_mib(MAX_ARRAY_BYTES)} one array of a clip "
                               "may hold. Fix: split the clip, or check that the file is a DyMesh "
                               ".bin clip.")
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

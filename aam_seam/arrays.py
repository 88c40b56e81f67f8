"""The two array files of an animate job, written and read on both sides of the seam.

Request mesh (`mesh.npz`, client -> server):
    vertices     (N, 3) float
    faces        (M, k) int, 0-based; or, for mixed polygons,
    faces_flat   (sum of sizes,) int64 corner indices polygon after polygon, with
    face_sizes   (M,) int64 corners per polygon; or no faces at all (a point cloud)
    mask         optional (N,) float32 weights, 0 pinned .. 1 moves fully
Result (`out.npz`, server -> client):
    takes        (K, T, N, 3) float32 in the request's vertex order, one clip per variation
    seeds        (K,) int64, the seed that made each take

Files are read with allow_pickle=False (nothing in them can run code) and written whole or not
at all (a temporary file renamed into place).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import write_atomically
from .codes import ErrorCode, SeamError


@dataclass
class Polygons:
    """Mixed polygons without a Python list per face: corner indices and corners per face
    (what Blender's `polygons.foreach_get("vertices"/"loop_total")` gives directly)."""

    flat: np.ndarray
    sizes: np.ndarray


# The largest array a mesh or result file may declare: a 10M-vertex mesh in float64 is 240 MB.
MAX_ARRAY_BYTES = 512 * 1024**2


def save_npz_atomically(path: str | os.PathLike, compress: bool = False, **arrays) -> Path:
    """np.savez to `path`, whole or not at all (see atomic). A file object, so np.savez does
    not append its own suffix."""
    return write_atomically(path, lambda fh: (np.savez_compressed if compress else np.savez)(fh, **arrays))


class LyingHeader(ValueError):
    """An .npz member whose header claims more bytes than the member holds."""


def declared_sizes(path: str | os.PathLike) -> dict[str, int]:
    """Bytes each member of an .npz declares in its header, read without loading any data.
    LyingHeader when a header claims more than its zip entry holds (how a 2 MB file asks for
    gigabytes); the zip and numpy errors of an unreadable file pass through."""
    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
                declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if declared > info.file_size:
                    raise LyingHeader(f"member {info.filename} declares {declared} bytes but holds "
                                      f"{info.file_size}")
            sizes[info.filename[:-4]] = declared
    return sizes


def check_npz_size(path: str | os.PathLike, max_bytes: int, code: ErrorCode, what: str) -> None:
    """Refuse an .npz whose arrays would not fit `max_bytes` each, before any is loaded. A file
    that is no readable .npz at all passes: its loader says what is wrong with it."""
    try:
        sizes = declared_sizes(path)
    except LyingHeader as exc:
        raise SeamError(code, f"the {what} {Path(path).name} is damaged or forged: {exc}.") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return
    too_big = {name: size for name, size in sizes.items() if size > max_bytes}
    if too_big:
        name, size = max(too_big.items(), key=lambda item: item[1])
        raise SeamError(code, f"the {what} {Path(path).name} declares a {size / 1024**2:.0f} MB "
                        f"array '{name}', above the {max_bytes / 1024**2:.0f} MB limit: it is not "
                        "a mesh this tool can animate, or the file is damaged.")


def _load(path: Path, what: str) -> dict[str, np.ndarray]:
    code = ErrorCode.BAD_MESH if what == "mesh" else ErrorCode.BAD_RESULT
    check_npz_size(path, MAX_ARRAY_BYTES, code, f"{what} file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as exc:  # truncated zip, foreign file, pickled objects
        raise SeamError(code, f"cannot read the {what} file {path.name} ({type(exc).__name__}: "
                        f"{exc}); animate again.") from None


# ----------------------------------------------------------------------------- request mesh

def write_mesh_file(path: str | os.PathLike, vertices, faces, mask=None) -> int:
    """Write the request's mesh; returns N. faces: (M, k) ints, a list of polygons, Polygons,
    or None; mask: None or one weight per vertex. Values are not judged here: the backend
    validates them and names any problem."""
    verts = np.asarray(vertices)
    if verts.dtype.kind not in "fiu" or verts.ndim != 2 or verts.shape[1] != 3:
        raise SeamError(ErrorCode.BAD_MESH, f"vertices must be an (N, 3) array of numbers, got "
                        f"shape {verts.shape} of {verts.dtype}.")
    if verts.dtype.kind != "f":
        verts = verts.astype(np.float64)
    arrays = {"vertices": verts}
    if isinstance(faces, Polygons):
        arrays["faces_flat"] = np.asarray(faces.flat, dtype=np.int64).reshape(-1)
        arrays["face_sizes"] = np.asarray(faces.sizes, dtype=np.int64).reshape(-1)
    elif isinstance(faces, np.ndarray) and faces.dtype != object:
        arrays["faces"] = faces
    elif faces is not None:
        rows = [np.asarray(face).reshape(-1) for face in faces]
        sizes = np.array([row.size for row in rows], dtype=np.int64)
        if rows and np.all(sizes == sizes[0]):
            arrays["faces"] = np.stack(rows)
        elif rows:
            arrays["faces_flat"] = np.concatenate(rows).astype(np.int64)
            arrays["face_sizes"] = sizes
    if mask is not None:
        arrays["mask"] = np.asarray(mask, dtype=np.float32)
    save_npz_atomically(path, **arrays)
    return int(verts.shape[0])


def read_mesh_file(path: str | os.PathLike):
    """(vertices, faces, mask or None) of a request mesh; mixed polygons come back as one -1
    padded (M, max k) array, which the backend's mesh code reads as polygons."""
    p = Path(path)
    if not p.is_file():
        raise SeamError(ErrorCode.BAD_REQUEST, f"the mesh file {p} of this request does not exist; "
                        "the add-on's work folder was removed while the job was queued. Animate again.")
    arrays = _load(p, "mesh")
    if "vertices" not in arrays:
        raise SeamError(ErrorCode.BAD_MESH, f"the mesh file {p.name} has no 'vertices' array "
                        f"(found: {', '.join(sorted(arrays)) or 'nothing'}).")
    mask = arrays.get("mask")
    if "faces_flat" in arrays or "face_sizes" in arrays:
        faces = padded_polygons(arrays.get("faces_flat"), arrays.get("face_sizes"))
    else:
        faces = arrays.get("faces")
    return arrays["vertices"], faces, mask


def padded_polygons(flat, sizes) -> np.ndarray:
    """faces_flat + face_sizes -> (M, max size) int64 with -1 after each polygon's corners."""
    def bad(message: str) -> SeamError:
        return SeamError(ErrorCode.BAD_MESH, message)

    if flat is None or sizes is None:
        raise bad("mixed polygons need both 'faces_flat' and 'face_sizes' in the mesh file.")
    flat = np.asarray(flat).reshape(-1)
    sizes = np.asarray(sizes).reshape(-1)
    if flat.dtype.kind not in "iu" or sizes.dtype.kind not in "iu":
        raise bad("faces_flat and face_sizes must be integer arrays (0-based vertex indices).")
    if sizes.size == 0:
        return np.zeros((0, 3), np.int64)
    if np.any(sizes < 3):
        first = int(np.flatnonzero(sizes < 3)[0])
        raise bad(f"face {first} has only {int(sizes[first])} vertices; every polygon needs at "
                  "least 3. Fix: delete loose edges/points stored as faces.")
    if int(sizes.sum()) != flat.size:
        raise bad(f"face_sizes add up to {int(sizes.sum())} corners but faces_flat holds "
                  f"{flat.size}; the mesh file is inconsistent.")
    if np.any(flat < 0):
        # -1 is padding in the array we build; a negative index here must not hide as padding.
        raise bad(f"faces_flat holds negative vertex index {int(flat.min())}; indices are 0-based.")
    width = int(sizes.max())
    out = np.full((sizes.size, width), -1, dtype=np.int64)
    out[np.arange(width)[None, :] < sizes[:, None]] = flat  # row-major: each polygon in order
    return out


# ----------------------------------------------------------------------------- result

def write_result_file(path: str | os.PathLike, takes: np.ndarray, seeds) -> Path:
    """takes (K, T, N, 3), or one (T, N, 3) clip; seeds: one per take."""
    takes = np.ascontiguousarray(takes, dtype=np.float32)
    if takes.ndim == 3:
        takes = takes[None]
    return save_npz_atomically(path, takes=takes,
                               seeds=np.asarray(seeds, dtype=np.int64).reshape(-1))


def read_result_file(path: str | os.PathLike, num_vertices: int) -> tuple[np.ndarray, list[int]]:
    """(takes (K, T, N, 3) float32, seeds [K]), checked against the request's vertex count."""
    arrays = _load(Path(path), "result")
    if "takes" not in arrays or "seeds" not in arrays:
        raise SeamError(ErrorCode.BAD_RESULT, f"the backend's result file {Path(path).name} lacks "
                        "'takes' or 'seeds'; animate again.")
    takes = np.asarray(arrays["takes"], dtype=np.float32)
    seeds = [int(s) for s in np.asarray(arrays["seeds"]).reshape(-1)]
    if takes.ndim != 4 or takes.shape[2:] != (num_vertices, 3) or takes.shape[0] != len(seeds):
        raise SeamError(ErrorCode.BAD_RESULT, f"the backend returned takes of shape {takes.shape} "
                        f"with {len(seeds)} seeds for a mesh of {num_vertices} vertices; animate again.")
    return takes, seeds

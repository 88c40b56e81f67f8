"""Reading and writing mesh files without Blender (no torch, no bpy).

Supported inputs:
  .obj  Wavefront OBJ: `v` and `f` statements (f entries as v, v/vt, v//vn or v/vt/vn; negative
        indices count back from the last vertex read so far; n-gons kept as n-gons). All
        objects and groups are merged in file order, like a whole-scene import. Other
        statements (vt, vn, o, g, s, usemtl, mtllib, l, p, ...) are ignored.
  .npz  numpy archive with `vertices` (N, 3), or `frames` (T, N, 3) of which frame 0 is used,
        and optional `faces` (M, k) integer array (0-based; -1 entries are padding).

Faces come back as an (M, k) int64 array when every face has k vertices, otherwise as a list
of lists. Everything that goes wrong raises backend.errors.MeshError with the line number or
key that caused it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from aam_seam.arrays import MAX_ARRAY_BYTES, check_npz_size
from aam_seam.codes import ErrorCode, SeamError
from backend.errors import MeshError, UserError

SUPPORTED_EXTENSIONS = (".obj", ".npz")


def load_mesh(path) -> tuple[np.ndarray, np.ndarray | list[list[int]]]:
    """Read a mesh file: (vertices float64 (N, 3), faces (M, k) int64 array or list of lists)."""
    p = Path(path)
    if not p.exists():
        raise MeshError(f"mesh file not found: {p}. Fix: check the path and file name.")
    if p.is_dir():
        raise MeshError(f"{p} is a folder, not a mesh file. Fix: pass the path of a "
                        f"{' or '.join(SUPPORTED_EXTENSIONS)} file.")
    ext = p.suffix.lower()
    if ext == ".obj":
        return _load_obj(p)
    if ext == ".npz":
        return _load_npz(p)
    raise MeshError(
        f"unsupported mesh file type {ext or '(no extension)'!r} for {p.name}. Supported: "
        f"{', '.join(SUPPORTED_EXTENSIONS)}. Fix: export the mesh as OBJ (or open it in "
        "Blender and use the add-on)."
    )


def _pack_faces(faces: list[list[int]]):
    """A rectangular int64 array when all faces have the same size, else the list itself."""
    if not faces:
        return np.zeros((0, 3), np.int64)
    k = len(faces[0])
    if all(len(f) == k for f in faces):
        return np.asarray(faces, dtype=np.int64).reshape(len(faces), k)
    return faces


def _logical_lines(text: str):
    """(line number, content) with comments stripped and '\\' continuations joined."""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _load_obj(path: Path):
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MeshError(f"could not read {path}: {exc}. Fix: check the file permissions.") from None
    vertices: list[tuple[float, float, float]] = []
    faces: list[list[int]] = []
    face_lines: list[int] = []
    for number, line in _logical_lines(text):
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "v":
            if len(parts) < 4:
                raise MeshError(f"{path.name} line {number}: a vertex needs x y z, got "
                                f"{line.strip()!r}. Fix: repair or re-export the OBJ file.")
            try:
                vertices.append((float(parts[1]), float(parts[2]), float(parts[3])))
            except ValueError:
                raise MeshError(f"{path.name} line {number}: vertex coordinates are not "
                                f"numbers: {line.strip()!r}. Fix: repair or re-export the OBJ "
                                "file.") from None
        elif tag == "f":
            if len(parts) < 4:
                raise MeshError(f"{path.name} line {number}: a face needs at least 3 vertices, "
                                f"got {line.strip()!r}. Fix: delete that line or re-export.")
            face = []
            count = len(vertices)
            for token in parts[1:]:
                try:
                    index = int(token.split("/", 1)[0])
                except ValueError:
                    raise MeshError(f"{path.name} line {number}: bad face entry {token!r} "
                                    "(expected v, v/vt, v//vn or v/vt/vn). Fix: repair or "
                                    "re-export the OBJ file.") from None
                if index > 0:
                    face.append(index - 1)
                elif index < 0:
                    # Relative index: -1 is the most recent vertex read so far.
                    if count + index < 0:
                        raise MeshError(f"{path.name} line {number}: relative index {index} "
                                        f"reaches before the first vertex (only {count} read "
                                        "so far). Fix: re-export the OBJ file.")
                    face.append(count + index)
                else:
                    raise MeshError(f"{path.name} line {number}: face index 0 is invalid (OBJ "
                                    "indices start at 1). Fix: re-export the OBJ file.")
            faces.append(face)
            face_lines.append(number)
    if not vertices:
        raise MeshError(f"{path.name} contains no vertices ('v' lines). Fix: export the mesh "
                        "geometry, not just materials or curves.")
    n = len(vertices)
    for face, number in zip(faces, face_lines):
        top = max(face)
        if top >= n:
            raise MeshError(f"{path.name} line {number}: face refers to vertex {top + 1}, but "
                            f"the file has only {n} vertices. Fix: re-export the OBJ file.")
    return np.asarray(vertices, dtype=np.float64), _pack_faces(faces)


def _load_npz(path: Path):
    try:
        check_npz_size(path, MAX_ARRAY_BYTES, ErrorCode.BAD_MESH, "mesh file")
        archive = np.load(path, allow_pickle=False)
    except SeamError as exc:
        raise MeshError(exc.message) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MeshError(f"could not read {path.name} as a numpy .npz archive ({exc}). Fix: "
                        "save it with numpy.savez.") from None
    with archive:
        keys = list(archive.files)
        try:
            if "vertices" in keys:
                vertices = np.asarray(archive["vertices"], dtype=np.float64)
            elif "frames" in keys:
                frames = np.asarray(archive["frames"], dtype=np.float64)
                if frames.ndim != 3 or frames.shape[0] == 0:
                    raise MeshError(f"{path.name}: 'frames' has shape {frames.shape}, expected "
                                    "(T, N, 3). Fix: store the animation as (T, N, 3).")
                vertices = frames[0]
            else:
                raise MeshError(f"{path.name} has no 'vertices' (or 'frames') array; found "
                                f"{keys}. Fix: save with numpy.savez(path, vertices=..., "
                                "faces=...).")
            faces = archive["faces"] if "faces" in keys else None
        except ValueError as exc:
            raise MeshError(f"{path.name}: an array could not be loaded ({exc}). Fix: store "
                            "plain numeric arrays (faces as an (M, k) integer array padded "
                            "with -1, not an object array).") from None
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise MeshError(f"{path.name}: vertices have shape {vertices.shape}, expected (N, 3).")
    if faces is None:
        return vertices, np.zeros((0, 3), np.int64)
    faces = np.asarray(faces)
    if faces.size == 0:
        return vertices, np.zeros((0, 3), np.int64)
    if faces.ndim != 2 or faces.dtype.kind not in "iu":
        raise MeshError(f"{path.name}: 'faces' must be an (M, k) integer array, got shape "
                        f"{faces.shape} dtype {faces.dtype}.")
    return vertices, faces.astype(np.int64)


def load_weights(spec: str) -> np.ndarray:
    """Per-vertex weights from WEIGHTS.npy, WEIGHTS.npz (its 'mask' array, or its only array),
    or WEIGHTS.npz:NAME. Their count and range are judged against the mesh later."""
    text = str(spec)
    name = None
    if ".npz:" in text:
        text, name = text.rsplit(":", 1)
    path = Path(text)
    if not path.is_file():
        raise UserError(f"mask file not found: {path}. Fix: give a .npy of per-vertex weights, or a "
                        ".npz holding a 'mask' array.", code=ErrorCode.BAD_MASK)
    try:
        if path.suffix.lower() == ".npy":
            weights = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".npz":
            check_npz_size(path, MAX_ARRAY_BYTES, ErrorCode.BAD_MASK, "mask file")
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                chosen = name or ("mask" if "mask" in keys else (keys[0] if len(keys) == 1 else None))
                if chosen not in keys:
                    raise UserError(f"{path.name} has no {chosen or 'mask'!r} array (found: "
                                    f"{', '.join(keys) or 'nothing'}); name one as {path.name}:NAME.",
                                    code=ErrorCode.BAD_MASK)
                weights = archive[chosen]
        else:
            raise UserError(f"a mask is a .npy or .npz file of per-vertex weights, not {path.name}.",
                            code=ErrorCode.BAD_MASK)
    except SeamError as exc:
        raise UserError(exc.message, code=exc.code) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"could not read the mask {path.name} ({exc}); save it with numpy.save.",
                        code=ErrorCode.BAD_MASK) from None
    weights = np.asarray(weights)
    if weights.dtype.kind not in "fiub":
        raise UserError(f"the mask in {path.name} holds {weights.dtype} values; it needs numbers "
                        "from 0 (pinned) to 1 (free).", code=ErrorCode.BAD_MASK)
    return weights.reshape(-1) if weights.ndim == 2 and 1 in weights.shape else weights


def save_obj(path, vertices, faces=None, *, comment: str | None = None) -> None:
    """Write a minimal OBJ (v and 1-based f lines); -1 padding in face arrays is skipped.

    float32 vertices are written with 9 significant digits and float64 with 17, so reading the
    file back gives the same values.
    """
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise MeshError(f"vertices have shape {v.shape}, expected (N, 3).")
    fmt = "%.9g" if v.dtype == np.float32 else "%.17g"
    buf = io.StringIO()
    if comment:
        for line in comment.splitlines():
            buf.write(f"# {line}\n")
    np.savetxt(buf, v, fmt=f"v {fmt} {fmt} {fmt}")
    if faces is not None:
        for face in (faces.tolist() if isinstance(faces, np.ndarray) else faces):
            idx = [int(i) + 1 for i in face if int(i) != -1]
            if idx:
                buf.write("f " + " ".join(map(str, idx)) + "\n")
    Path(path).write_text(buf.getvalue(), encoding="utf-8")

"""Mesh preprocessing as pure numpy functions (no torch, no bpy).

This reproduces what the official AnimateAnyMesh inference script (`test_drive.py` and
`utils/mesh_utils.py`) does to a mesh before the VAE sees it, and adds the clean-up a real user
mesh needs (validation, n-gon triangulation, clear errors):

1. validate      reject meshes the model cannot use, with a message naming the fix
2. triangulate   fan-split quads and n-gons (the official import hands over triangles only)
3. weld          merge exactly identical float64 positions; rows come out sorted by (x, y, z)
4. clean faces   sort each face row, drop faces with a repeated vertex, dedupe and sort the rows
5. normalise     bounding-box centre of frame 0 and max |v - centre| + 1e-8, all in float32
6. adjacency     undirected edge list (both directions, no self loops) in row-major order

Every step matches the official numbers bit for bit on the parity fixtures
(`shared/fixtures/official_parity`, see tests/unit/test_mesh.py). `PreparedMesh.to_original` and
`restore_frames` undo the welding and the normalisation so an animation can be handed back to
the caller's vertex order and units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from backend.errors import MeshError

# The official script adds this to the largest absolute coordinate before dividing, so a
# zero-extent mesh would not divide by zero (it still collapses, which validate_mesh rejects).
DENOMINATOR_EPS = np.float32(1e-8)

# The model and the normalisation compute in float32, which holds magnitudes up to about 3.4e38;
# a float64 coordinate beyond that becomes inf and the run ends in NaN far from the cause.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Below the limit is not enough: the bounding-box centre adds max and min (inf above half the
# limit), and restoring the animation multiplies normalised positions, which may leave the unit
# box, by the half extent. 16x headroom keeps both finite, and no real mesh comes near it.
MAX_COORDINATE = FLOAT32_MAX / 16


# ---------------------------------------------------------------------------------------------
# Input coercion and validation
# ---------------------------------------------------------------------------------------------

def _as_vertex_array(vertices) -> np.ndarray:
    """(N, 3) float64 copy of the caller's vertices, or a MeshError saying what is wrong."""
    try:
        arr = np.asarray(vertices, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MeshError(
            f"vertices could not be read as numbers ({exc}). Fix: pass an (N, 3) array of "
            "x, y, z coordinates."
        ) from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise MeshError(
            f"vertices have shape {arr.shape}, expected (N, 3). Fix: pass one x, y, z row per "
            "vertex (for an animation, pass only the rest frame here)."
        )
    return arr


def _polygons_from_faces(faces) -> tuple[np.ndarray, np.ndarray, bool]:
    """Flatten faces into (flat vertex indices, vertex count per face, padded?).

    A rectangular integer array may carry -1 as padding (the official script pads faces that
    way); those entries are dropped and a row of only -1 counts as no face. In a list of
    sequences every entry is a real index, so -1 there is reported as out of range.
    """
    if faces is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), False
    if isinstance(faces, np.ndarray) and faces.dtype != object:
        arr = faces
        if arr.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), False
        if arr.ndim != 2:
            raise MeshError(
                f"faces have shape {arr.shape}; expected an (M, k) index array or a list of "
                "index sequences (one per polygon)."
            )
        arr = _integral(arr)
        keep = arr != -1
        return arr[keep].astype(np.int64, copy=False), keep.sum(axis=1).astype(np.int64), True
    # A list (or other iterable) of per-face sequences, possibly of different lengths.
    rows = list(faces)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), False
    try:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    except TypeError:
        raise MeshError(
            "faces must be a list of vertex-index sequences, e.g. [[0, 1, 2], [2, 3, 4, 5]]; "
            "found an entry that is not a sequence."
        ) from None
    if lengths.size and np.all(lengths == lengths[0]) and lengths[0] > 0:
        flat = np.asarray(rows).reshape(-1)
    elif lengths.sum() == 0:
        flat = np.zeros(0, np.int64)
    else:
        flat = np.concatenate([np.asarray(r).reshape(-1) for r in rows if len(r)])
    flat = _integral(flat)
    return flat.astype(np.int64, copy=False), lengths, False


def _integral(arr: np.ndarray) -> np.ndarray:
    """Face indices as integers; float arrays are accepted only when every value is whole."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise MeshError(
        f"face indices must be whole numbers, got dtype {arr.dtype}. Fix: store faces as an "
        "integer array (0-based vertex indices)."
    )


def _check_polygons(flat: np.ndarray, lengths: np.ndarray, padded: bool, num_vertices: int):
    short = lengths < 3
    if padded:
        short &= lengths != 0  # an all -1 row is padding, not a face
    if np.any(short):
        first = int(np.flatnonzero(short)[0])
        raise MeshError(
            f"face {first} has only {int(lengths[first])} vertices; {int(short.sum())} face(s) "
            "have fewer than 3. Fix: delete loose edges/points stored as faces, or fill them "
            "into proper polygons."
        )
    bad = (flat < 0) | (flat >= num_vertices)
    if np.any(bad):
        pos = int(np.flatnonzero(bad)[0])
        face = int(np.searchsorted(np.cumsum(lengths), pos, side="right"))
        raise MeshError(
            f"face {face} refers to vertex {int(flat[pos])}, but the mesh has {num_vertices} "
            f"vertices (valid indices 0..{num_vertices - 1}); {int(bad.sum())} index(es) are "
            "out of range. Fix: re-export the mesh (face indices must be 0-based and point at "
            "existing vertices)."
        )


def _check_float32_range(verts: np.ndarray) -> None:
    magnitude = np.abs(verts).max(axis=1)
    row = int(np.argmax(magnitude))
    biggest = float(magnitude[row])
    if biggest <= MAX_COORDINATE:
        return
    if biggest > FLOAT32_MAX:
        what = (f"overflow float32: vertex {row} has a coordinate of magnitude {biggest:.3g}, and "
                "float32, which the model computes in, holds at most about 3.4e38")
    else:
        what = (f"come too close to float32's limit of about 3.4e38: vertex {row} has a "
                f"coordinate of magnitude {biggest:.3g}, and normalising and animating it in "
                f"float32 would overflow (coordinates must stay below {MAX_COORDINATE:.2g})")
    raise MeshError(f"the mesh's coordinates {what}. Fix: scale the mesh down or move it nearer "
                    "the origin (in Blender: scale the object down and apply the scale, Object > "
                    "Apply > Scale) and animate again.")


def validate_mesh(vertices, faces):
    """Check a mesh before preprocessing; return (vertices float64 (N, 3), faces unchanged).

    Faces may be an (M, 3) / (M, 4) / (M, k) integer array (-1 entries are padding) or a list
    of variable-length index sequences (n-gons). No faces at all is allowed (a point cloud);
    the caller is expected to warn. Raises MeshError for: no vertices, NaN/inf coordinates,
    coordinates that overflow float32 (or come within 16x of it, see MAX_COORDINATE), faces with
    fewer than 3 vertices, indices out of range, and zero extent (every vertex at
    the same position, so there is no scale to normalise by).
    """
    verts = _as_vertex_array(vertices)
    n = verts.shape[0]
    if n == 0:
        raise MeshError("the mesh has no vertices. Fix: select or export a mesh with geometry.")
    finite = np.all(np.isfinite(verts), axis=1)
    if not np.all(finite):
        bad = np.flatnonzero(~finite)
        raise MeshError(
            f"{bad.size} vertex(es) have NaN or infinite coordinates (first: vertex "
            f"{int(bad[0])}). Fix: repair or delete those vertices in the source mesh (e.g. "
            "Blender: Mesh > Clean Up, or apply the object's transforms)."
        )
    _check_float32_range(verts)
    flat, lengths, padded = _polygons_from_faces(faces)
    _check_polygons(flat, lengths, padded, n)
    if np.all(verts == verts[0]):
        raise MeshError(
            f"all {n} vertices sit at the same position, so the mesh has zero extent and "
            "cannot be normalised. Fix: animate a mesh with real geometry (check that the "
            "object is not scaled to zero)."
        )
    if faces is None:
        faces = np.zeros((0, 3), np.int64)
    return verts, faces


# ---------------------------------------------------------------------------------------------
# Triangulation, welding, face clean-up
# ---------------------------------------------------------------------------------------------

def _fan(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Fan triangles (v0, v_i, v_i+1) for every polygon, in face order."""
    counts = np.maximum(lengths - 2, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((0, 3), np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    poly = np.repeat(np.arange(lengths.size), counts)
    # Position of each triangle inside its own fan: 1 .. L-2.
    first_tri = np.concatenate([[0], np.cumsum(counts)[:-1]])
    local = np.arange(total) - first_tri[poly] + 1
    base = starts[poly]
    return np.stack([flat[base], flat[base + local], flat[base + local + 1]], axis=1)


def triangulate(faces) -> np.ndarray:
    """Fan-triangulate quads and n-gons into an (M', 3) int64 array.

    An n-gon gives n - 2 triangles that all share its first vertex. That is exact for convex
    polygons (what modelling tools and glTF exporters produce for quads) and keeps every
    polygon edge; concave n-gons may get overlapping triangles, which only affects the
    neighbour graph, never the vertex positions. Rows of -1 padding in a rectangular array are
    ignored.
    """
    flat, lengths, padded = _polygons_from_faces(faces)
    short = (lengths < 3) & ~(padded & (lengths == 0))
    if np.any(short):
        first = int(np.flatnonzero(short)[0])
        raise MeshError(
            f"face {first} has only {int(lengths[first])} vertices and cannot be triangulated. "
            "Fix: remove faces with fewer than 3 vertices."
        )
    return _fan(flat, lengths)


def weld(vertices_f64) -> tuple[np.ndarray, np.ndarray]:
    """Merge exactly identical positions: (unique rows sorted by (x, y, z), inverse (N,)).

    Equivalent to the official `torch.unique(v, dim=0, sorted=True, return_inverse=True)` on
    float64 rows: rows are compared by value, so only bit-for-bit equal coordinates merge
    (no tolerance), and `unique[inverse]` rebuilds the input.

    -0.0 and +0.0 compare equal, so torch merges them (keeping whichever sign it met first);
    here every zero is stored as +0.0. The two can only differ in the sign bit of a zero, and
    every later step (normalisation, the exactly-zero valid_mask test) treats them alike.
    Inputs must be finite (validate_mesh checks that): NaN never equals itself.
    """
    v = np.asarray(vertices_f64, dtype=np.float64).reshape(-1, 3) + 0.0  # -0.0 + 0.0 == +0.0
    n = v.shape[0]
    if n == 0:
        return np.zeros((0, 3), np.float64), np.zeros(0, np.int64)
    order = np.lexsort((v[:, 2], v[:, 1], v[:, 0]))
    sorted_rows = v[order]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.any(sorted_rows[1:] != sorted_rows[:-1], axis=1, out=starts[1:])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return sorted_rows[starts], inverse


def _clean_faces_counted(tri_faces, remap) -> tuple[np.ndarray, int, int]:
    """clean_faces plus (number of degenerate faces, number of duplicate faces) dropped."""
    tri = np.asarray(tri_faces, dtype=np.int64).reshape(-1, 3)
    remap = np.asarray(remap, dtype=np.int64)
    if tri.size and (tri.min() < 0 or tri.max() >= remap.size):
        raise MeshError(
            f"triangle indices run from {int(tri.min())} to {int(tri.max())}, but only "
            f"{remap.size} vertices exist. Fix: validate the mesh before cleaning its faces."
        )
    rows = np.sort(remap[tri], axis=1)
    ok = (rows[:, 0] != rows[:, 1]) & (rows[:, 1] != rows[:, 2])
    degenerate = int((~ok).sum())
    rows = rows[ok]
    if rows.shape[0] == 0:
        return np.zeros((0, 3), np.int64), degenerate, 0
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
    rows = rows[order]
    first = np.empty(rows.shape[0], dtype=bool)
    first[0] = True
    np.any(rows[1:] != rows[:-1], axis=1, out=first[1:])
    return rows[first], degenerate, int((~first).sum())


def clean_faces(tri_faces, remap) -> np.ndarray:
    """Map triangles through the weld inverse and tidy them as the official merge does.

    Each row is sorted ascending (the winding is lost, as officially), faces that now repeat a
    vertex are dropped, and the remaining rows are deduplicated and sorted lexicographically.
    """
    return _clean_faces_counted(tri_faces, remap)[0]


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

def normalize(frames0) -> tuple[np.ndarray, np.float32]:
    """(center (3,) float32, denominator float32) from the rest frame, exactly as official.

    centre = (max + min) / 2 per axis (the bounding-box centre, not the mean) and
    denominator = max |v - centre| + 1e-8, every operation in float32. A float64 input is cast
    to float32 first, which is what the official script does right after welding.
    """
    v = np.asarray(frames0, dtype=np.float32).reshape(-1, 3)
    if v.shape[0] == 0:
        raise MeshError("cannot normalise a mesh with no vertices.")
    center = (v.max(axis=0) + v.min(axis=0)) / np.float32(2)
    v_max = np.abs(v - center).max()
    denominator = np.float32(v_max + DENOMINATOR_EPS)
    return center.astype(np.float32), denominator


def apply_normalization(frames, center, denominator) -> np.ndarray:
    """normalized = (frames - center) / denominator in float32 (any leading frame axes)."""
    f = np.asarray(frames, dtype=np.float32)
    return (f - np.asarray(center, np.float32)) / np.float32(denominator)


def undo_normalization(frames_normalized, center, denominator) -> np.ndarray:
    """original = normalized * denominator + center in float32; inverse of apply_normalization.

    The round trip is exact up to float32 rounding (a few ulps of the coordinate size).
    """
    f = np.asarray(frames_normalized, dtype=np.float32)
    return f * np.float32(denominator) + np.asarray(center, np.float32)


# ---------------------------------------------------------------------------------------------
# valid_mask and adjacency
# ---------------------------------------------------------------------------------------------

def valid_mask_official(pc) -> tuple[np.ndarray, int]:
    """(valid_mask (N,) bool, valid_length) with the official rule, for official-compat mode.

    A row counts as valid unless it is exactly zero in every coordinate of every frame; the
    official code then treats valid_length as a prefix length. Quirk: a real vertex that sits
    exactly on the bounding-box centre in every frame is flagged invalid, and because of the
    prefix use the *last* real vertex is the one that drops out of FPS and adjacency.
    `pc` is (T, N, 3) (an (N, 3) single frame is also accepted).
    """
    p = np.asarray(pc)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ValueError(f"pc must have shape (T, N, 3), got {np.shape(pc)}")
    mask = np.any(p != 0, axis=(0, 2))
    return mask, int(mask.sum())


def adjacency_edges(faces, num_vertices: int, valid_length: int | None = None) -> np.ndarray:
    """Undirected mesh edges as (E, 2) int64 pairs in both directions, sorted by (i, j).

    The official code builds a dense N x N boolean matrix from the three edges of each face
    (rows with a -1 are skipped), symmetrises it and keeps rows and columns < valid_length;
    this returns that matrix's True entries in row-major order without ever building it
    (one sort over 6F keys, so memory is linear in F). Self loops are dropped: a vertex
    attends to its neighbours only.
    """
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    f = f[np.all(f >= 0, axis=1)]
    n = int(num_vertices)
    limit = n if valid_length is None else min(int(valid_length), n)
    if f.size and f.max() >= n:
        raise MeshError(
            f"a face refers to vertex {int(f.max())} but only {n} vertices exist. Fix: pass "
            "the vertex count of the mesh the faces belong to."
        )
    if f.shape[0] == 0 or limit <= 0:
        return np.zeros((0, 2), np.int64)
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    i = np.concatenate([a, b])
    j = np.concatenate([b, a])
    keep = (i != j) & (i < limit) & (j < limit)
    # One int64 key per directed edge; n < 3e9 keeps i * n + j inside int64.
    keys = np.unique(i[keep] * np.int64(limit) + j[keep])
    return np.stack([keys // limit, keys % limit], axis=1)


# ---------------------------------------------------------------------------------------------
# The whole chain
# ---------------------------------------------------------------------------------------------

@dataclass
class PreparedMesh:
    """A mesh ready for the model, plus what is needed to hand results back.

    Rows of `vertices` / `normalized` are the welded vertices (sorted by (x, y, z) when welding
    is on, the caller's order otherwise). `to_original[k]` is the row that the caller's vertex
    k became; `object_offsets` splits the caller's vertices into the objects that were merged
    (object i owns caller rows object_offsets[i] : object_offsets[i + 1]).
    """

    vertices: np.ndarray        # (U, 3) float32 welded positions, original units
    faces: np.ndarray           # (F, 3) int64, rows ascending, unique, sorted
    edges: np.ndarray           # (E, 2) int64 adjacency, both directions, row-major
    to_original: np.ndarray     # (N_orig,) int64 caller vertex -> welded row
    center: np.ndarray          # (3,) float32
    denominator: np.float32     # max |v - center| + 1e-8
    normalized: np.ndarray      # (U, 3) float32 = (vertices - center) / denominator
    warnings: list[str] = field(default_factory=list)
    object_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_original_vertices(self) -> int:
        return int(self.to_original.shape[0])

    @property
    def object_index_maps(self) -> list[np.ndarray]:
        """Per merged object, the welded row of each of its vertices (official merge_index)."""
        off = self.object_offsets
        return [self.to_original[off[k]:off[k + 1]] for k in range(len(off) - 1)]


def _prepare_polygons(verts: np.ndarray, flat: np.ndarray, lengths: np.ndarray, *,
                      weld_vertices: bool, object_offsets: np.ndarray) -> PreparedMesh:
    warnings: list[str] = []
    tri = _fan(flat, lengths)
    if weld_vertices:
        unique, inverse = weld(verts)
    else:
        unique, inverse = verts, np.arange(verts.shape[0], dtype=np.int64)
    welded = verts.shape[0] - unique.shape[0]
    if welded:
        warnings.append(f"{welded} duplicate vertices welded (identical positions merged)")
    faces, degenerate, duplicate = _clean_faces_counted(tri, inverse)
    if degenerate:
        warnings.append(f"{degenerate} degenerate faces dropped (a repeated vertex)")
    if duplicate:
        warnings.append(f"{duplicate} duplicate faces dropped")

    # The official script casts the welded float64 positions to float32 before normalising.
    vertices32 = unique.astype(np.float32)
    if np.all(vertices32 == vertices32[0]):
        raise MeshError(
            "all vertices coincide once stored in float32, so the mesh has no extent to "
            "normalise. Fix: scale the mesh up or move it nearer the origin."
        )
    center, denominator = normalize(vertices32)
    normalized = apply_normalization(vertices32, center, denominator)
    u = vertices32.shape[0]
    edges = adjacency_edges(faces, u)

    if flat.size == 0:
        warnings.append("mesh has no faces: animating as a point cloud without the neighbour step")
    elif faces.shape[0] == 0:
        warnings.append("every face was degenerate: animating as a point cloud without the "
                        "neighbour step")
    else:
        used = np.zeros(u, dtype=bool)
        used[faces.reshape(-1)] = True
        loose = int(u - used.sum())
        if loose:
            warnings.append(f"{loose} vertices belong to no face; they are animated without "
                            "neighbours")
    return PreparedMesh(
        vertices=vertices32, faces=faces, edges=edges, to_original=inverse.astype(np.int64),
        center=center, denominator=denominator, normalized=normalized, warnings=warnings,
        object_offsets=np.asarray(object_offsets, dtype=np.int64),
    )


def prepare_mesh(vertices, faces, *, weld_vertices: bool = True) -> PreparedMesh:
    """validate -> triangulate -> weld -> clean faces -> normalise, as one call.

    With weld_vertices=False the caller's vertex order is kept (to_original is the identity);
    the official pipeline always welds.
    """
    verts, faces = validate_mesh(vertices, faces)
    flat, lengths, _ = _polygons_from_faces(faces)
    return _prepare_polygons(verts, flat, lengths, weld_vertices=weld_vertices,
                             object_offsets=np.array([0, verts.shape[0]], np.int64))


def merge_objects(objects: Sequence[tuple[object, object]], *, face_indexing: str = "local",
                  weld_vertices: bool = True) -> PreparedMesh:
    """Merge several objects into one prepared mesh, as the official GLB route does.

    `objects` is a list of (vertices, faces). With face_indexing="local" each object's faces
    index its own vertices from 0; with "global" they are already offset by the running vertex
    count of the earlier objects (how the official import, and the fixture's
    `raw_obj{i}_faces_global`, store them). The result's `object_index_maps` equal the official
    `merge_index_obj{i}`.
    """
    if face_indexing not in ("local", "global"):
        raise ValueError(f"face_indexing must be 'local' or 'global', got {face_indexing!r}")
    objs = list(objects)
    if not objs:
        raise MeshError("no objects to merge. Fix: select at least one mesh object.")
    verts_list, flats, lens = [], [], []
    offset = 0
    offsets = [0]
    for k, item in enumerate(objs):
        try:
            v, f = item
        except (TypeError, ValueError):
            raise MeshError(f"object {k} must be a (vertices, faces) pair.") from None
        v = _as_vertex_array(v)
        flat, lengths, padded = _polygons_from_faces(f)
        n = v.shape[0]
        lo = offset if face_indexing == "global" else 0
        try:
            _check_polygons(flat - lo, lengths, padded, n)
        except MeshError as exc:
            hint = (" (faces were read as 'global', already offset by earlier objects' vertex "
                    "counts; pass face_indexing='local' if they start at 0)"
                    if face_indexing == "global" else "")
            raise MeshError(f"object {k}: {exc}{hint}") from None
        verts_list.append(v)
        flats.append(flat - lo + offset)
        lens.append(lengths)
        offset += n
        offsets.append(offset)
    verts = np.concatenate(verts_list, axis=0)
    flat = np.concatenate(flats)
    lengths = np.concatenate(lens)
    # Whole-mesh checks (no vertices, NaN, zero extent) with the merged vertex numbering.
    validate_mesh(verts, None)
    return _prepare_polygons(verts, flat, lengths, weld_vertices=weld_vertices,
                             object_offsets=np.asarray(offsets, np.int64))


def restore_frames(prepared: PreparedMesh, frames_normalized) -> np.ndarray:
    """(T, U, 3) normalised frames -> (T, N_orig, 3) float32 in original units and order.

    Welded duplicates (e.g. UV seams) get identical trajectories, which keeps seams closed.
    """
    f = np.asarray(frames_normalized, dtype=np.float32)
    if f.ndim != 3 or f.shape[1:] != (prepared.num_vertices, 3):
        raise ValueError(
            f"frames must have shape (T, {prepared.num_vertices}, 3), got {f.shape}; slice off "
            "any padding rows first"
        )
    original = undo_normalization(f, prepared.center, prepared.denominator)
    return original[:, prepared.to_original]


def restore_object_frames(prepared: PreparedMesh, frames_normalized) -> list[np.ndarray]:
    """restore_frames split per merged object: a list of (T, n_i, 3) float32 arrays."""
    full = restore_frames(prepared, frames_normalized)
    off = prepared.object_offsets
    return [full[:, off[k]:off[k + 1]] for k in range(len(off) - 1)]


__all__ = [
    "DENOMINATOR_EPS", "PreparedMesh", "adjacency_edges", "apply_normalization", "clean_faces",
    "merge_objects", "normalize", "prepare_mesh", "restore_frames", "restore_object_frames",
    "triangulate", "undo_normalization", "valid_mask_official", "validate_mesh", "weld",
]

"""Pure numpy tests of backend.mesh and backend.mesh_io (no torch, no bpy).

Parity tests compare against the official AnimateAnyMesh fixtures bit for bit; the rest cover
clean-up, round trips and every user-facing error.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from backend.errors import MeshError
from backend.mesh import (
    DENOMINATOR_EPS, adjacency_edges, apply_normalization, clean_faces, merge_objects,
    normalize, prepare_mesh, restore_frames, restore_object_frames, triangulate,
    undo_normalization, valid_mask_official, validate_mesh, weld,
)
from backend.mesh_io import load_mesh, save_obj

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "official_parity"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "mesh.safetensors").exists(),
                                    reason="parity fixtures not available")


@pytest.fixture(scope="module")
def mesh_fx():
    return load_file(str(FIXTURES / "mesh.safetensors"))


@pytest.fixture(scope="module")
def static_fx():
    return load_file(str(FIXTURES / "vae_case_static.safetensors"))


@pytest.fixture(scope="module")
def e2e_fx():
    return load_file(str(FIXTURES / "e2e.safetensors"))


def _raw_objects(fx):
    return [(fx[f"raw_obj{i}_vertices_f64"], fx[f"raw_obj{i}_faces_global"]) for i in range(3)]


def _bits_equal(a, b):
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# ------------------------------------------------------------------------------------------
# Parity with the official merge / normalisation / adjacency
# ------------------------------------------------------------------------------------------

@needs_fixtures
def test_weld_matches_official_merge(mesh_fx):
    verts = np.concatenate([v for v, _ in _raw_objects(mesh_fx)])
    unique, inverse = weld(verts)
    assert unique.dtype == np.float64 and inverse.dtype == np.int64
    assert np.array_equal(unique.astype(np.float32), mesh_fx["merged_vertices"])
    assert np.array_equal(unique[inverse], verts)
    sizes = np.cumsum([0, 89, 97, 43])
    for i in range(3):
        assert np.array_equal(inverse[sizes[i]:sizes[i + 1]], mesh_fx[f"merge_index_obj{i}"])
    faces = np.concatenate([f for _, f in _raw_objects(mesh_fx)])
    assert np.array_equal(clean_faces(faces, inverse), mesh_fx["merged_faces"])


@needs_fixtures
def test_merge_objects_matches_official(mesh_fx, static_fx):
    prepared = merge_objects(_raw_objects(mesh_fx), face_indexing="global")
    assert np.array_equal(prepared.vertices, mesh_fx["merged_vertices"])
    assert prepared.vertices.dtype == np.float32
    assert np.array_equal(prepared.faces, mesh_fx["merged_faces"])
    assert np.array_equal(prepared.faces, static_fx["faces_padded"][0])
    for i, index_map in enumerate(prepared.object_index_maps):
        assert np.array_equal(index_map, mesh_fx[f"merge_index_obj{i}"])
    assert _bits_equal(prepared.center, static_fx["center"])
    assert _bits_equal(prepared.denominator, static_fx["scale_denominator"][0])
    assert _bits_equal(prepared.denominator, static_fx["v_max"][0])
    assert _bits_equal(prepared.normalized, static_fx["pc"][0, 0, :205])
    assert np.array_equal(prepared.edges, static_fx["adjacency_edges"])
    assert prepared.edges.shape == (1200, 2)
    assert any("24 duplicate vertices welded" in w for w in prepared.warnings)
    # The isolated vertex stays (it belongs to no face but is still animated).
    iso = int(mesh_fx["isolated_vertex_indices"][0])
    assert prepared.num_vertices == 205
    assert iso not in prepared.faces and iso not in prepared.edges
    assert any("1 vertices belong to no face" in w for w in prepared.warnings)


@needs_fixtures
def test_local_face_indexing_gives_same_result(mesh_fx):
    objs = _raw_objects(mesh_fx)
    offsets = np.cumsum([0] + [len(v) for v, _ in objs])
    local = [(v, f - offsets[i]) for i, (v, f) in enumerate(objs)]
    a = merge_objects(objs, face_indexing="global")
    b = merge_objects(local)
    assert np.array_equal(a.faces, b.faces) and np.array_equal(a.to_original, b.to_original)
    with pytest.raises(MeshError, match="object 1: .*face_indexing='local'"):
        merge_objects(local, face_indexing="global")


@needs_fixtures
def test_obj_route_equals_raw_object_route(mesh_fx, static_fx):
    vertices, faces = load_mesh(FIXTURES / "test_mesh_rest.obj")
    assert vertices.shape == (205, 3) and faces.shape == (400, 3)
    prepared = prepare_mesh(vertices, faces)
    raw = merge_objects(_raw_objects(mesh_fx), face_indexing="global")
    assert np.array_equal(prepared.to_original, np.arange(205))  # already merged and sorted
    assert np.array_equal(prepared.vertices, raw.vertices)
    assert np.array_equal(prepared.faces, raw.faces)
    assert np.array_equal(prepared.edges, raw.edges)
    assert _bits_equal(prepared.center, raw.center)
    assert _bits_equal(prepared.denominator, raw.denominator)
    assert _bits_equal(prepared.normalized, static_fx["pc"][0, 0, :205])


@needs_fixtures
def test_valid_mask_on_padded_fixture(mesh_fx, static_fx):
    prepared = merge_objects(_raw_objects(mesh_fx), face_indexing="global")
    padded = np.concatenate([prepared.normalized, np.zeros((51, 3), np.float32)])
    pc = np.repeat(padded[None], 16, axis=0)
    assert _bits_equal(pc, static_fx["pc"][0])
    mask, length = valid_mask_official(pc)
    assert np.array_equal(mask, static_fx["valid_mask"][0])
    assert length == int(static_fx["valid_length"][0]) == 205
    edges = adjacency_edges(prepared.faces, 256, length)
    assert np.array_equal(edges, static_fx["adjacency_edges"])


def test_valid_mask_quirk_vertex_at_centre():
    toy = np.array([[[-1.0, 0, 0], [0, 0, 0], [1, 0, 0]]], np.float32)
    mask, length = valid_mask_official(toy)
    assert mask.tolist() == [True, False, True] and length == 2
    moving = np.concatenate([toy, toy + np.float32([0, 0, 0.5])])
    assert valid_mask_official(moving)[0].all()


@needs_fixtures
def test_restore_frames_matches_official_per_object_output(mesh_fx, e2e_fx):
    prepared = merge_objects(_raw_objects(mesh_fx), face_indexing="global")
    outputs = e2e_fx["outputs_normalized"][0, :, :205]
    assert np.array_equal(undo_normalization(outputs, prepared.center, prepared.denominator),
                          e2e_fx["outputs_original_units"])
    per_object = restore_object_frames(prepared, outputs)
    for i, traj in enumerate(per_object):
        assert np.array_equal(traj, e2e_fx[f"outputs_obj{i}_original_units"])
    whole = restore_frames(prepared, outputs)
    assert whole.shape == (16, 229, 3) and whole.dtype == np.float32
    with pytest.raises(ValueError, match="slice off any padding"):
        restore_frames(prepared, e2e_fx["outputs_normalized"][0])


# ------------------------------------------------------------------------------------------
# Normalisation
# ------------------------------------------------------------------------------------------

def test_normalize_is_bbox_centre_and_float32():
    v = np.array([[0, 0, 0], [4, 2, 1], [1, 1, 10]], np.float64)
    center, denom = normalize(v)
    assert center.dtype == np.float32 and isinstance(denom, np.float32)
    assert center.tolist() == [2.0, 1.0, 5.0]  # not the mean (5/3, 1, 11/3)
    assert denom == np.float32(5.0) + DENOMINATOR_EPS
    # The 1e-8 is visible for a tiny mesh.
    small = v * 1e-7
    assert normalize(small)[1] > np.float32(5e-7)
    n = apply_normalization(v, center, denom)
    assert np.abs(n).max() <= 1.0 and n.dtype == np.float32
    assert np.allclose(undo_normalization(n, center, denom), v, atol=1e-6)


def test_weld_round_trip_restores_original_order():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 3)) * 3 + 7
    verts = np.concatenate([base, base[[3, 7, 7, 20]]])[rng.permutation(54)]
    faces = [[0, 1, 2], [2, 3, 4], [4, 5, 6, 7]]
    prepared = prepare_mesh(verts, faces)
    assert prepared.num_vertices == 50 and prepared.num_original_vertices == 54
    assert any("4 duplicate vertices welded" in w for w in prepared.warnings)
    order = np.lexsort(prepared.vertices[:, ::-1].T)
    assert np.array_equal(order, np.arange(50))  # sorted by (x, y, z)
    rest = restore_frames(prepared, np.stack([prepared.normalized] * 2))
    assert rest.shape == (2, 54, 3)
    eps = np.finfo(np.float32).eps * np.abs(verts).max() * 4
    assert np.abs(rest - verts).max() <= eps
    unwelded = prepare_mesh(verts, faces, weld_vertices=False)
    assert np.array_equal(unwelded.to_original, np.arange(54)) and unwelded.num_vertices == 54


def test_weld_merges_signed_zero():
    verts = np.array([[0.0, 1, 2], [-0.0, 1, 2], [1, 0, 0]])
    unique, inverse = weld(verts)
    assert unique.shape == (2, 3) and inverse.tolist() == [0, 0, 1]
    assert not np.signbit(unique).any()


# ------------------------------------------------------------------------------------------
# Triangulation and face clean-up
# ------------------------------------------------------------------------------------------

def _area_vectors(verts, tris):
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    return 0.5 * np.cross(b - a, c - a)


def test_triangulate_quads_and_ngons_cover_the_polygon():
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    hexagon = np.stack([np.cos(angles), np.sin(angles), np.zeros(6)], axis=1)
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64) + [3, 0, 0]
    verts = np.concatenate([hexagon, square])
    faces = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9], [0, 2, 4]]
    tris = triangulate(faces)
    assert tris.shape == (4 + 2 + 1, 3) and tris.dtype == np.int64
    # Same orientation and total area as the polygons: the triangles tile them exactly.
    hex_area = 6 * np.sqrt(3) / 4
    areas = _area_vectors(verts, tris)[:, 2]
    assert np.all(areas > 0)
    assert np.isclose(areas[:4].sum(), hex_area) and np.isclose(areas[4:6].sum(), 1.0)
    ragged = np.empty(3, dtype=object)
    ragged[:] = [np.array(f) for f in faces]
    assert np.array_equal(triangulate(ragged), tris)
    assert set(map(tuple, tris[:4].tolist())) == {(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5)}
    # Every polygon edge survives in the triangulation.
    edges = {tuple(sorted((t[k], t[(k + 1) % 3]))) for t in tris.tolist() for k in range(3)}
    for face in faces:
        for a, b in zip(face, face[1:] + face[:1]):
            assert tuple(sorted((a, b))) in edges


def test_triangulate_rectangular_arrays_with_padding():
    quads = np.array([[0, 1, 2, 3], [4, 5, 6, -1], [-1, -1, -1, -1]])
    assert triangulate(quads).tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6]]
    assert triangulate(np.zeros((0, 3), np.int64)).shape == (0, 3)
    with pytest.raises(MeshError, match="face 0 has only 2 vertices"):
        triangulate(np.array([[0, 1, -1]]))


def test_degenerate_and_duplicate_faces_dropped():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float64)
    # Vertex 4 welds onto vertex 1, so face [1, 4, 2] becomes degenerate;
    # [2, 1, 0] repeats [0, 1, 2].
    faces = np.array([[0, 1, 2], [2, 1, 0], [1, 4, 2], [0, 3, 1], [0, 2, 3]])
    prepared = prepare_mesh(verts, faces)
    # Welded order: (0,0,0), (0,0,1), (0,1,0), (1,0,0) -> caller vertices map to [0, 3, 2, 1, 3].
    assert prepared.to_original.tolist() == [0, 3, 2, 1, 3]
    assert prepared.faces.tolist() == [[0, 1, 2], [0, 1, 3], [0, 2, 3]]
    assert any("1 degenerate faces dropped" in w for w in prepared.warnings)
    assert any("1 duplicate faces dropped" in w for w in prepared.warnings)
    assert clean_faces(np.array([[0, 0, 1], [2, 1, 0]]), np.arange(3)).tolist() == [[0, 1, 2]]


def test_clean_faces_rejects_bad_indices():
    with pytest.raises(MeshError, match="only 3 vertices exist"):
        clean_faces(np.array([[0, 1, 5]]), np.arange(3))


# ------------------------------------------------------------------------------------------
# Adjacency
# ------------------------------------------------------------------------------------------

def _dense_adjacency(faces, n, valid_length):
    adj = np.zeros((n, n), bool)
    for a, b, c in faces:
        if min(a, b, c) < 0:
            continue
        adj[[a, b, c], [b, c, a]] = True
    adj = adj | adj.T
    adj[valid_length:, :] = False
    adj[:, valid_length:] = False
    np.fill_diagonal(adj, False)
    return np.argwhere(adj)


def test_adjacency_matches_dense_reference_with_padding_and_prefix():
    rng = np.random.default_rng(3)
    faces = rng.integers(0, 40, size=(120, 3))
    faces[::17] = -1
    for valid_length in (None, 40, 25, 0):
        got = adjacency_edges(faces, 40, valid_length)
        ref = _dense_adjacency(faces, 40, 40 if valid_length is None else valid_length)
        assert np.array_equal(got, ref)
        assert got.dtype == np.int64


def _grid(n):
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    verts = np.stack([ii.ravel(), jj.ravel(), np.zeros(n * n)], axis=1).astype(np.float64)
    a = (ii[:-1, :-1] * n + jj[:-1, :-1]).ravel()
    quads = np.stack([a, a + n, a + n + 1, a + 1], axis=1)
    return verts, quads


def test_large_grid_adjacency_is_linear_memory():
    n = 300
    verts, quads = _grid(n)
    tris = triangulate(quads)
    assert tris.shape == (2 * (n - 1) ** 2, 3)
    tracemalloc.start()
    edges = adjacency_edges(tris, n * n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Grid edges: horizontal + vertical + one diagonal per quad, each stored in both directions.
    assert edges.shape[0] == 2 * (2 * n * (n - 1) + (n - 1) ** 2)
    # About 300 bytes per face; a dense N x N bool matrix would be 8.1 GB.
    assert peak < 1000 * tris.shape[0]
    prepared = prepare_mesh(verts, quads)
    assert np.array_equal(np.unique(prepared.edges[:, 0]), np.arange(n * n))


# ------------------------------------------------------------------------------------------
# Point clouds, isolated vertices
# ------------------------------------------------------------------------------------------

def test_mesh_without_faces_is_a_point_cloud():
    verts = np.random.default_rng(1).normal(size=(30, 3))
    for faces in (None, [], np.zeros((0, 3), np.int64)):
        prepared = prepare_mesh(verts, faces)
        assert prepared.faces.shape == (0, 3) and prepared.edges.shape == (0, 2)
        assert any("no faces" in w for w in prepared.warnings)
        assert prepared.normalized.shape == (30, 3)


def test_isolated_vertex_is_kept():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]], np.float64)
    prepared = prepare_mesh(verts, [[0, 1, 2]])
    assert prepared.num_vertices == 4
    assert 3 not in prepared.edges
    restored = restore_frames(prepared, prepared.normalized[None])
    assert np.allclose(restored[0], verts, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Errors a user can act on
# ------------------------------------------------------------------------------------------

def test_error_empty_mesh():
    with pytest.raises(MeshError, match="no vertices"):
        validate_mesh(np.zeros((0, 3)), None)


def test_error_nan_and_inf_names_count_and_first_index():
    verts = np.zeros((10, 3))
    verts[:, 0] = np.arange(10)
    verts[4, 1] = np.nan
    verts[7, 2] = np.inf
    with pytest.raises(MeshError, match=r"2 vertex\(es\) have NaN or infinite.*first: vertex 4"):
        validate_mesh(verts, [[0, 1, 2]])


def test_error_face_index_out_of_range():
    verts = np.eye(3)
    with pytest.raises(MeshError, match=r"face 1 refers to vertex 3, but the mesh has 3 vertices"):
        validate_mesh(verts, [[0, 1, 2], [0, 1, 3]])
    with pytest.raises(MeshError, match="refers to vertex -1"):
        validate_mesh(verts, [[0, 1, -1]])
    with pytest.raises(MeshError, match="face 0 refers to vertex -2"):
        validate_mesh(verts, np.array([[0, 1, -2]]))


def test_error_face_with_fewer_than_three_vertices():
    verts = np.eye(4, 3)
    with pytest.raises(MeshError, match=r"face 1 has only 2 vertices.*fewer than 3"):
        validate_mesh(verts, [[0, 1, 2], [1, 3]])
    with pytest.raises(MeshError, match="face 0 has only 0 vertices"):
        validate_mesh(verts, [[]])


def test_error_zero_extent():
    with pytest.raises(MeshError, match="same position.*zero extent"):
        validate_mesh(np.ones((5, 3)), [[0, 1, 2]])
    with pytest.raises(MeshError, match="zero extent"):
        prepare_mesh(np.array([[1.0, 2.0, 3.0]]), None)
    # Distinct in float64 but identical once cast to float32, as the official code does.
    with pytest.raises(MeshError, match="float32"):
        prepare_mesh(np.array([[1.0, 0, 0], [1.0 + 1e-12, 0, 0]]), None)


def test_error_bad_shapes_and_types():
    with pytest.raises(MeshError, match=r"shape \(4, 2\), expected \(N, 3\)"):
        validate_mesh(np.zeros((4, 2)), None)
    with pytest.raises(MeshError, match="whole numbers"):
        validate_mesh(np.eye(3), np.array([[0, 1, 1.5]]))
    with pytest.raises(MeshError, match="could not be read as numbers"):
        validate_mesh([["a", "b", "c"]], None)
    verts, faces = validate_mesh(np.eye(3).astype(np.float32), np.array([[0.0, 1.0, 2.0]]))
    assert verts.dtype == np.float64 and triangulate(faces).tolist() == [[0, 1, 2]]


# ------------------------------------------------------------------------------------------
# File reading and writing
# ------------------------------------------------------------------------------------------

OBJ_TEXT = """# two objects, mixed face syntax
mtllib scene.mtl
o first
v 0 0 0
v 1 0 0
v 1 1 0   # trailing comment
v 0 1 0 0.5 0.5 0.5
vt 0 0
vn 0 0 1
g quad
f 1/1/1 2/1/1 3/1/1 4/1/1
o second
v 2 0 0
v 3 0 0
v 3 1 0
v 2.5 2 0
v 2 1 0
s off
f -5// -4// -3// -2// -1//
f 5 6 \\
  7
l 1 2
"""


def test_load_obj_forms_negative_indices_and_ngons(tmp_path):
    path = tmp_path / "scene.obj"
    path.write_text(OBJ_TEXT)
    verts, faces = load_mesh(path)
    assert verts.shape == (9, 3) and verts.dtype == np.float64
    assert faces == [[0, 1, 2, 3], [4, 5, 6, 7, 8], [4, 5, 6]]
    prepared = prepare_mesh(verts, faces)
    # 2 + 3 + 1 triangles; the last one repeats the pentagon's first fan triangle.
    assert prepared.faces.shape == (5, 3)
    assert any("1 duplicate faces dropped" in w for w in prepared.warnings)


def test_load_obj_errors_name_the_line(tmp_path):
    cases = {
        "v 0 0\n": "line 1: a vertex needs x y z",
        "v 0 0 0\nv 1 x 0\n": "line 2: vertex coordinates are not numbers",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n": "line 4: a face needs at least 3 vertices",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 a/1\n": "line 4: bad face entry 'a/1'",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n": "line 4: face index 0 is invalid",
        "v 0 0 0\nf -1 -2 -3\n": "line 2: relative index -2 reaches before the first vertex",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 9\n":
            "line 5: face refers to vertex 9, but the file has only 3",
        "# nothing\nvn 0 0 1\n": "contains no vertices",
    }
    for k, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{k}.obj"
        path.write_text(text)
        with pytest.raises(MeshError, match=message):
            load_mesh(path)


def test_load_errors_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(MeshError, match="mesh file not found"):
        load_mesh(tmp_path / "nope.obj")
    other = tmp_path / "mesh.fbx"
    other.write_text("x")
    with pytest.raises(MeshError, match=r"unsupported mesh file type '.fbx'.*\.obj, \.npz"):
        load_mesh(other)
    with pytest.raises(MeshError, match="is a folder"):
        load_mesh(tmp_path)


def test_load_npz_vertices_frames_and_faces(tmp_path):
    verts = np.random.default_rng(2).normal(size=(6, 3))
    faces = np.array([[0, 1, 2, 3], [3, 4, 5, -1]])
    np.savez(tmp_path / "a.npz", vertices=verts, faces=faces)
    v, f = load_mesh(tmp_path / "a.npz")
    assert np.array_equal(v, verts) and np.array_equal(f, faces)
    assert triangulate(f).shape == (3, 3)
    frames = np.stack([verts, verts + 1.0]).astype(np.float32)
    np.savez(tmp_path / "b.npz", frames=frames)
    v, f = load_mesh(tmp_path / "b.npz")
    assert np.array_equal(v, frames[0]) and f.shape == (0, 3)
    np.savez(tmp_path / "c.npz", points=verts)
    with pytest.raises(MeshError, match=r"no 'vertices' \(or 'frames'\) array; found \['points'\]"):
        load_mesh(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", vertices=verts, faces=np.array([[0, 1], [2, 3, 4]], dtype=object))
    with pytest.raises(MeshError, match="object array"):
        load_mesh(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(MeshError, match="could not read e.npz"):
        load_mesh(tmp_path / "e.npz")


@needs_fixtures
def test_save_obj_round_trip_is_exact(tmp_path, mesh_fx):
    path = tmp_path / "rest.obj"
    save_obj(path, mesh_fx["merged_vertices"], mesh_fx["merged_faces"], comment="rest pose")
    verts, faces = load_mesh(path)
    assert np.array_equal(verts.astype(np.float32), mesh_fx["merged_vertices"])
    assert np.array_equal(faces, mesh_fx["merged_faces"])
    raw = mesh_fx["raw_obj0_vertices_f64"]
    save_obj(path, raw, [[0, 1, 2, 3], [4, 5, 6]])
    verts, faces = load_mesh(path)
    assert np.array_equal(verts, raw) and faces == [[0, 1, 2, 3], [4, 5, 6]]

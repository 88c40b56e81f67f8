"""Small triangle-mesh builders and rotation helpers for the procedural data set (numpy only).

Every builder returns (vertices (N, 3) float64, faces (F, 3) int64) with outward-facing
counter-clockwise triangles. Most closed shapes come from one surface of revolution (`lathe`):
a profile of (radius, height) points revolved around +Z, where a zero radius at either end becomes
a single pole vertex. Spheres, ellipsoids, capsules, cylinders, cones and the creature body parts
are all lathes; the torus, the ico sphere, the subdivided cube and the plane have their own
builders.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# Rotations
# ---------------------------------------------------------------------------------------------


def rotation(axis, angle) -> np.ndarray:
    """Rotation matrices about `axis` (3,) by `angle` (scalar or (T,)), right-handed.

    Returns (3, 3) for a scalar angle, (T, 3, 3) for an array. An angle of exactly 0 gives exactly
    the identity, which the motions rely on so frame 0 stays the rest pose bit for bit.
    """
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def rotation_between(a, b) -> np.ndarray:
    """The smallest rotation (3, 3) that turns direction a into direction b."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        return rotation(np.cross(a, helper), np.pi)
    return rotation(axis, np.arctan2(s, c))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (3, 3) from a random unit quaternion."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def lathe(radii, heights, n_seg: int) -> tuple[np.ndarray, np.ndarray]:
    """Revolve the profile (radii[k], heights[k]), listed bottom to top, around +Z.

    A zero radius at the first or last profile point becomes one pole vertex closing that end;
    other profile points become rings of n_seg vertices. Heights should increase (for outward
    winding); a profile without poles gives an open tube.
    """
    r = np.asarray(radii, dtype=np.float64)
    z = np.asarray(heights, dtype=np.float64)
    bottom_pole, top_pole = r[0] == 0.0, r[-1] == 0.0
    ring_r = r[int(bottom_pole): len(r) - int(top_pole)]
    ring_z = z[int(bottom_pole): len(z) - int(top_pole)]
    k = len(ring_r)
    phi = np.arange(n_seg) * (2.0 * np.pi / n_seg)
    ring = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    verts = np.empty((k * n_seg, 3))
    verts[:, :2] = (ring_r[:, None, None] * ring[None]).reshape(-1, 2)
    verts[:, 2] = np.repeat(ring_z, n_seg)
    j = np.arange(n_seg)
    jn = (j + 1) % n_seg
    rows = np.arange(k - 1)[:, None] * n_seg
    a, b = rows + j, rows + jn
    c, d = b + n_seg, a + n_seg
    faces = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    extra = []
    if bottom_pole:
        p = len(verts) + len(extra)
        extra.append([0.0, 0.0, z[0]])
        faces.append(np.stack([np.full(n_seg, p), jn, j], -1))
    if top_pole:
        p = len(verts) + len(extra)
        extra.append([0.0, 0.0, z[-1]])
        top = (k - 1) * n_seg
        faces.append(np.stack([top + j, top + jn, np.full(n_seg, p)], -1))
    if extra:
        verts = np.concatenate([verts, np.asarray(extra)], axis=0)
    return verts, np.concatenate(faces, axis=0).astype(np.int64)


def uv_sphere(n_seg: int, n_ring: int, radius: float = 1.0):
    theta = np.linspace(0.0, np.pi, n_ring + 1)
    return lathe(radius * np.sin(theta) * (np.arange(n_ring + 1) % n_ring != 0),
                 -radius * np.cos(theta), n_seg)


def capsule(n_seg: int, n_ring: int, length: float, r_bottom: float, r_top: float | None = None):
    """A capsule along +Z from z=0 to z=length (sphere centres), hemispherical ends.

    `n_ring` rings per hemisphere; a different top radius gives a tapered limb.
    """
    r_top = r_bottom if r_top is None else r_top
    theta = np.linspace(0.0, np.pi / 2, n_ring + 1)
    r_lo, z_lo = r_bottom * np.sin(theta), -r_bottom * np.cos(theta)
    r_hi, z_hi = r_top * np.sin(theta[::-1]), length + r_top * np.cos(theta[::-1])
    r_lo[0] = r_hi[-1] = 0.0
    return lathe(np.r_[r_lo, r_hi], np.r_[z_lo, z_hi], n_seg)


def cylinder(n_seg: int, n_height: int, radius: float, height: float, r_top: float | None = None):
    """A closed cylinder (a frustum when r_top differs, a cone when r_top is 0) on z in [0, height].

    The flat caps get an extra ring at half radius so cap triangles are not long slivers.
    """
    r_top = radius if r_top is None else r_top
    h = np.linspace(0.0, height, n_height + 1)
    side_r = radius + (r_top - radius) * h / height
    if r_top == 0.0:  # the apex is the top pole
        radii = np.r_[0.0, 0.5 * radius, side_r[:-1], 0.0]
        heights = np.r_[0.0, 0.0, h[:-1], height]
    else:
        radii = np.r_[0.0, 0.5 * radius, side_r, 0.5 * r_top, 0.0]
        heights = np.r_[0.0, 0.0, h, height, height]
    return lathe(radii, heights, n_seg)


def cone(n_seg: int, n_height: int, radius: float, height: float):
    return cylinder(n_seg, n_height, radius, height, r_top=0.0)


def torus(n_major: int, n_minor: int, major: float, minor: float):
    u = np.arange(n_major) * (2.0 * np.pi / n_major)
    v = np.arange(n_minor) * (2.0 * np.pi / n_minor)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    rad = major + minor * np.cos(vv)
    verts = np.stack([rad * np.cos(uu), rad * np.sin(uu), minor * np.sin(vv)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts, faces.astype(np.int64)


_ICO_T = (1.0 + 5 ** 0.5) / 2.0
_ICO_V = np.array([[-1, _ICO_T, 0], [1, _ICO_T, 0], [-1, -_ICO_T, 0], [1, -_ICO_T, 0],
                   [0, -1, _ICO_T], [0, 1, _ICO_T], [0, -1, -_ICO_T], [0, 1, -_ICO_T],
                   [_ICO_T, 0, -1], [_ICO_T, 0, 1], [-_ICO_T, 0, -1], [-_ICO_T, 0, 1]], float)
_ICO_F = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                   [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                   [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                   [8, 6, 7], [9, 8, 1]], np.int64)


def ico_sphere(subdivisions: int, radius: float = 1.0):
    """Icosahedron split `subdivisions` times (each triangle into four), projected to the sphere."""
    verts, faces = _ICO_V / np.linalg.norm(_ICO_V[0]), _ICO_F
    for _ in range(subdivisions):
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        uniq, inv = np.unique(np.sort(edges, axis=1), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        mids = verts[uniq].mean(axis=1)
        mids /= np.linalg.norm(mids, axis=1, keepdims=True)
        m = inv.reshape(3, -1).T + len(verts)  # midpoint of edges 01, 12, 20 per face
        a, b, c = faces.T
        faces = np.concatenate([np.stack([a, m[:, 0], m[:, 2]], 1), np.stack([b, m[:, 1], m[:, 0]], 1),
                                np.stack([c, m[:, 2], m[:, 1]], 1), np.stack([m[:, 0], m[:, 1], m[:, 2]], 1)])
        verts = np.concatenate([verts, mids])
    return verts * radius, faces.astype(np.int64)


def _grid(nu: int, nv: int):
    """Quad-grid triangles for an (nu+1) x (nv+1) vertex grid, vertex (i, j) at i*(nv+1)+j."""
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a = i * (nv + 1) + j
    b, c, d = a + (nv + 1), a + (nv + 1) + 1, a + 1
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                           np.stack([a, c, d], -1).reshape(-1, 3)]).astype(np.int64)


def weld_exact(verts: np.ndarray, faces: np.ndarray, decimals: int = 9):
    """Merge vertices that coincide after rounding (seams of separately built patches)."""
    _, first, inv = np.unique(np.round(verts, decimals), axis=0, return_index=True,
                              return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(first)  # keep vertices in first-seen order for readable indices
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return verts[first[order]], rank[inv][faces]


def subdivided_cube(n: int, size: float = 1.0, spherify: float = 0.0):
    """A cube of side `size` centred at the origin, each face an n x n quad grid.

    `spherify` in [0, 1] blends every vertex toward the circumscribed-sphere direction, giving
    rounded boxes.
    """
    s = np.linspace(-1.0, 1.0, n + 1)
    uu, vv = np.meshgrid(s, s, indexing="ij")
    verts, faces = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            u = np.zeros(3)
            u[(axis + 1) % 3] = 1.0
            v = np.cross(normal, u)  # u x v = normal: outward winding
            pts = normal + uu.reshape(-1, 1) * u + vv.reshape(-1, 1) * v
            faces.append(_grid(n, n) + sum(len(p) for p in verts))
            verts.append(pts)
    verts, faces = weld_exact(np.concatenate(verts), np.concatenate(faces))
    if spherify > 0.0:
        unit = verts / np.linalg.norm(verts, axis=1, keepdims=True)
        verts = (1.0 - spherify) * verts + spherify * unit * np.sqrt(3.0) * 0.8
    return verts * (size / 2.0), faces


def plane(nx: int, ny: int, size_x: float, size_y: float):
    """A flat grid in the XY plane facing +Z, centred at the origin (single sided)."""
    x = np.linspace(-size_x / 2, size_x / 2, nx + 1)
    y = np.linspace(-size_y / 2, size_y / 2, ny + 1)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    verts = np.stack([xx, yy, np.zeros_like(xx)], -1).reshape(-1, 3)
    return verts, _grid(nx, ny)


def place_along(verts: np.ndarray, start, end) -> np.ndarray:
    """Move a part built along +Z from the origin so it runs from `start` toward `end`."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    rot = rotation_between([0.0, 0.0, 1.0], end - start)
    return verts @ rot.T + start


def edge_lengths(frames: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Lengths (T, E) of the unique undirected edges of `faces` in every frame."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    return np.linalg.norm(frames[:, e[:, 0]] - frames[:, e[:, 1]], axis=-1)

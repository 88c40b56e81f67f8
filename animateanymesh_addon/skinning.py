"""A vertex animation as a skinned skeleton: the math, with numpy only (no bpy).

The decomposition is Dem Bones (smooth skinning decomposition with rigid bones, py-dem-bones,
bundled as the extension's wheel). Rigid bones cannot scale, and whole-body motions that grow,
shrink, pulse or squash are scaling, so a root bone takes each frame's best per-axis scale and
translation first (least squares about the mesh's centre) and Dem Bones decomposes what is left,
in the root's frame:

    v[f, i] = A[f] @ sum_b w[i, b] * M[f, b] @ [u_i; 1]       u: rest, A: root, M: rigid bones

Blender's armature (and glTF / FBX skeletons) compose a child's pose with its parent's, so the
deforming bones hang under the root and each keeps a rigid local transform: pose_basis() gives
the channels that make Blender's own deformation equal this formula.

This module is imported both inside Blender and by the solver's worker process (skin_worker.py),
which runs the iterations so that Blender's interface never waits on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_INFLUENCES = 4        # bones per vertex: what game engines take
DEFAULT_BONES = 16        # chosen by benchmarks/armature_bench.py (README: "Bake to Armature")
MAX_BONES = 256
DEFAULT_ITERATIONS = 20
MIN_SCALE = 1e-3          # a root scale below this (a mesh shrunk to a point) is clamped
WELD_TOLERANCE = 1e-6     # share of the diagonal under which two rest vertices are one point


class SkinningError(ValueError):
    """Input the decomposition cannot take, as one sentence with the fix."""


@dataclass
class Skin:
    """A solved skeleton. Shapes: N vertices, T frames, B deforming bones, K influences."""

    rest: np.ndarray            # (N, 3) the rest coordinates the bones bind to
    bone_index: np.ndarray      # (N, K) int32, the bones that move each vertex
    bone_weight: np.ndarray     # (N, K) float32, their weights (rows sum to 1)
    root: np.ndarray            # (T, 4, 4) per-axis scale and translation of the whole body
    bones: np.ndarray           # (T, B, 4, 4) rigid bone transforms, in the root's frame
    rmse: float = 0.0           # Dem Bones' own residual, in the root's frame

    @property
    def num_bones(self) -> int:
        return int(self.bones.shape[1])

    @property
    def num_frames(self) -> int:
        return int(self.bones.shape[0])

    def deform(self) -> np.ndarray:
        """(T, N, 3): the skinned animation this skeleton plays."""
        return linear_blend(self.rest, self.bone_index, self.bone_weight,
                            self.root[:, None] @ self.bones)

    def save(self, path) -> None:
        np.savez(path, rest=self.rest, bone_index=self.bone_index, bone_weight=self.bone_weight,
                 root=self.root, bones=self.bones, rmse=np.float64(self.rmse))

    @classmethod
    def load(cls, path) -> "Skin":
        with np.load(path) as data:
            return cls(rest=data["rest"], bone_index=data["bone_index"],
                       bone_weight=data["bone_weight"], root=data["root"], bones=data["bones"],
                       rmse=float(data["rmse"]))


# ----------------------------------------------------------------------------- checks

def check_bones(bones: int, num_vertices: int) -> int:
    if isinstance(bones, bool) or int(bones) != bones or not 1 <= int(bones) <= MAX_BONES:
        raise SkinningError(f"bone count {bones!r} is out of range: use a whole number from 1 to "
                            f"{MAX_BONES}.")
    if int(bones) > num_vertices:
        raise SkinningError(f"{int(bones)} bones for a mesh of {num_vertices} vertices: use at "
                            f"most one bone per vertex ({num_vertices}).")
    return int(bones)


def check_animation(rest: np.ndarray, frames: np.ndarray) -> None:
    if frames.ndim != 3 or frames.shape[2] != 3:
        raise SkinningError(f"frames of shape {frames.shape} are not (frames, vertices, 3).")
    if frames.shape[0] < 2:
        raise SkinningError(f"the animation has {frames.shape[0]} frame: a bake needs at least 2. "
                            "Fix: animate the object, or widen the frame range.")
    if frames.shape[1] != len(rest):
        raise SkinningError(f"the animation has {frames.shape[1]} vertices per frame but the mesh "
                            f"has {len(rest)}: its topology changes over time (a modifier that adds "
                            "or removes geometry?). Fix: bake without such modifiers.")
    if len(rest) < 3:
        raise SkinningError(f"the mesh has {len(rest)} vertices: a bake needs at least 3.")
    if not (np.isfinite(frames).all() and np.isfinite(rest).all()):
        raise SkinningError("the animation holds non-finite coordinates (NaN or infinity). Fix: "
                            "check the modifiers or the cache that drive it.")


# ----------------------------------------------------------------------------- the root

def fit_root(rest: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(T, 4, 4): per frame, the per-axis scale about the centre and the translation that best
    map the rest pose onto the frame (least squares, axis by axis)."""
    centre = rest.mean(axis=0)
    u = rest - centre
    spread = np.maximum((u * u).sum(axis=0), 1e-30)
    roots = np.tile(np.eye(4), (len(frames), 1, 1))
    for f, frame in enumerate(frames):
        mean = frame.mean(axis=0)
        scale = ((frame - mean) * u).sum(axis=0) / spread
        scale = np.where((u * u).sum(axis=0) > 1e-30, np.maximum(scale, MIN_SCALE), 1.0)
        roots[f, :3, :3] = np.diag(scale)
        roots[f, :3, 3] = mean - scale * centre
    return roots


def apply(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """matrices (..., 4, 4) applied to points (..., N, 3)."""
    return points @ np.swapaxes(matrices[..., :3, :3], -1, -2) + matrices[..., None, :3, 3]


# ----------------------------------------------------------------------------- welding

def weld(rest: np.ndarray, frames: np.ndarray,
         tolerance: float = WELD_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """(representatives, inverse): vertices that share their position in every frame (UV or
    sharp-edge splits) are one point for the solver, so their weights cannot differ and the seam
    cannot open. Parts that only touch at rest and then move apart stay apart."""
    diag = float(np.linalg.norm(np.ptp(rest, axis=0))) or 1.0
    track = np.concatenate([rest[:, None], np.swapaxes(frames, 0, 1)], axis=1).reshape(len(rest), -1)
    keys = np.round(track / (diag * tolerance)).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def weld_polygons(polygons, inverse: np.ndarray) -> list[list[int]]:
    out = []
    for poly in polygons:
        ring = []
        for v in (int(inverse[i]) for i in poly):
            if v not in ring:
                ring.append(v)
        if len(ring) >= 3:
            out.append(ring)
    return out


# ----------------------------------------------------------------------------- the solve

def load_dem_bones():
    try:
        import py_dem_bones
    except ImportError:
        raise SkinningError("the skinning solver (py-dem-bones) is not installed: reinstall the "
                            "extension from the zip for this platform (it bundles the solver).") from None
    return py_dem_bones


def top_influences(weights: np.ndarray, k: int = MAX_INFLUENCES) -> tuple[np.ndarray, np.ndarray]:
    """Dense (N, B) weights as the k largest per vertex, renormalised: (index, weight)."""
    k = min(k, weights.shape[1])
    index = np.argsort(-weights, axis=1)[:, :k].astype(np.int32)
    weight = np.take_along_axis(weights, index, axis=1).clip(min=0.0)
    total = weight.sum(axis=1, keepdims=True)
    weight = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 0.0)
    weight[total[:, 0] <= 0, 0] = 1.0
    return index, weight.astype(np.float32)


TRIAL_ITERATIONS = 3      # iterations each candidate start gets before the best one goes on
CLUSTER_ROUNDS = 10       # rounds of fit-and-reassign in cluster_start()


def rigid_fit(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(T, 4, 4): per frame, the rotation and translation that best carry `points` (M, 3) onto
    `targets` (T, M, 3) in least squares (Kabsch)."""
    pc = points.mean(axis=0)
    qc = targets.mean(axis=1)
    h = np.einsum("mi,tmj->tij", points - pc, targets - qc[:, None])
    u, _, vt = np.linalg.svd(h)
    flip = np.sign(np.linalg.det(np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)))
    d = np.tile(np.eye(3), (len(h), 1, 1))
    d[:, 2, 2] = flip
    rot = np.swapaxes(vt, 1, 2) @ d @ np.swapaxes(u, 1, 2)
    out = np.tile(np.eye(4), (len(h), 1, 1))
    out[:, :3, :3] = rot
    out[:, :3, 3] = qc - np.einsum("tij,j->ti", rot, pc)
    return out


def cluster_start(u: np.ndarray, local: np.ndarray, bones: int,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A start for Dem Bones with every bone in use: (labels (N,), transforms (T, B, 4, 4)).

    Dem Bones' own start splits clusters only while a split pays, and on articulated bodies it
    can stop at 3-5 bones whatever was asked (a quadruped's lower legs then bend with their
    thighs). Here vertices are grouped by their trajectories (k-means++), then each group gets
    its best rigid motion and each vertex the group whose motion carries it best, a few rounds.
    """
    n, t = len(u), len(local)
    rng = np.random.default_rng(seed)
    track = np.concatenate([u[:, None], np.swapaxes(local, 0, 1)], axis=1).reshape(n, -1)
    centres = [track[rng.integers(n)]]
    gap = ((track - centres[0]) ** 2).sum(axis=1)
    for _ in range(bones - 1):
        pick = rng.choice(n, p=gap / gap.sum()) if gap.sum() > 0 else rng.integers(n)
        centres.append(track[pick])
        gap = np.minimum(gap, ((track - track[pick]) ** 2).sum(axis=1))
    label = np.argmin(np.stack([((track - c) ** 2).sum(axis=1) for c in centres]), axis=0)
    transforms = np.tile(np.eye(4), (t, bones, 1, 1))
    for _ in range(CLUSTER_ROUNDS):
        for b in range(bones):
            members = np.nonzero(label == b)[0]
            if len(members) >= 3:
                transforms[:, b] = rigid_fit(u[members], local[:, members])
        error = np.zeros((bones, n))
        for f in range(t):
            error += ((apply(transforms[f], u[None]) - local[f][None]) ** 2).sum(axis=-1)
        new = np.argmin(error, axis=0)
        if np.array_equal(new, label):
            break
        label = new
    used = np.unique(label)
    return np.searchsorted(used, label), transforms[:, used]


def solve(rest, frames, polygons, bones: int = DEFAULT_BONES, *,
          iterations: int = DEFAULT_ITERATIONS, influences: int = MAX_INFLUENCES,
          progress=None, cancelled=None) -> Skin | None:
    """Decompose `frames` (T, N, 3) of a mesh with rest coordinates `rest` (N, 3) and `polygons`
    (lists of vertex indices) into a root plus `bones` rigid bones.

    Two roots are tried for a few iterations, a still one and the fitted per-axis scale: scaling
    explains growing or squashing bodies, but on a flapping bird it would be a false scale that
    rigid bones then cannot undo. When Dem Bones' own start keeps fewer bones than asked, a
    start that keeps them (cluster_start) is tried too. The best, measured on the real frames,
    goes on.
    progress(done, total, rmse) is called after every iteration; cancelled() is asked before
    each: True stops the solve and returns None. Dem Bones may use fewer bones than asked when
    the motion has fewer distinct parts.
    """
    rest = np.asarray(rest, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64)
    check_animation(rest, frames)
    bones = check_bones(bones, len(rest))
    first, inverse = weld(rest, frames)
    faces = weld_polygons(polygons, inverse)
    if bones > 1 and not faces:
        raise SkinningError("the mesh has no faces: the solver needs them to keep weights smooth. "
                            "Fix: bake a mesh with faces, or use 1 bone.")
    still = np.tile(np.eye(4), (len(frames), 1, 1))
    fitted = fit_root(rest, frames)
    roots = [still]
    if np.abs(fitted[:, :3, :3] - np.eye(3)).max() > 1e-4:
        roots.append(fitted)
    trial = min(TRIAL_ITERATIONS, iterations)
    total = trial * len(roots) + iterations - trial
    done = 0
    dem_bones = load_dem_bones()

    def step(dem, rmse_out):
        nonlocal done
        if cancelled is not None and cancelled():
            return False
        dem.compute()
        done += 1
        rmse_out[0] = float(dem.rmse())
        if progress is not None:
            progress(done, total, rmse_out[0])
        return True

    candidates = []
    for root in roots:
        if cancelled is not None and cancelled():
            return None
        u, local = rest[first], apply(np.linalg.inv(root), frames)[:, first]
        wanted = min(bones, len(first))
        starts = [_dem_bones_for(dem_bones, u, local, faces, wanted, influences)]
        if starts[0].nB < wanted:      # its own start gave up bones: try one that keeps them
            total += trial
            starts.append(_dem_bones_for(dem_bones, u, local, faces, wanted, influences,
                                         start=cluster_start(u, local, wanted)))
        for dem in starts:
            rmse = [float("inf")]
            for _ in range(trial):
                if not step(dem, rmse):
                    return None
            candidates.append((dem, root, rmse))
    if len(candidates) > 1:
        errors = [error_stats(_read(dem, root, rest, inverse, influences).deform(), frames,
                              rest)["mean"] for dem, root, _ in candidates]
        candidates = [candidates[int(np.argmin(errors))]]
    dem, root, rmse = candidates[0]
    for _ in range(iterations - trial):
        if not step(dem, rmse):
            return None
    skin = _read(dem, root, rest, inverse, influences)
    skin.rmse = rmse[0]
    return skin


def _dem_bones_for(module, u, local, faces, bones, influences, start=None):
    """A Dem Bones solver for the (welded) rest `u` and the root-frame `local` frames, started
    by its own clustering or from `start` (cluster_start's labels and transforms)."""
    n, t = len(u), len(local)
    if start is not None:
        bones = start[1].shape[1]
    dem = module.DemBones()
    dem.nV, dem.nF, dem.nS, dem.nB = n, t, 1, bones
    dem.nnz = int(min(influences, bones))
    dem.nIters = 1          # one iteration per compute(): progress and cancel between them
    dem.nInitIters = 10
    dem.nTransIters = 5
    dem.nWeightsIters = 3
    dem.weightsSmooth = 1e-4
    dem.fStart = np.array([0, t], dtype=np.int32)
    dem.subjectID = np.zeros(t, dtype=np.int32)
    dem.u = np.ascontiguousarray(u.T)
    dem.v = np.ascontiguousarray(local.transpose(0, 2, 1).reshape(3 * t, n))
    dem.fv = faces
    if start is None:
        dem.init()
        return dem
    labels, transforms = start
    weights = np.zeros((bones, n))
    weights[labels, np.arange(n)] = 1.0
    dem.set_weights(weights)
    dem.m = np.ascontiguousarray(transforms.transpose(0, 2, 1, 3).reshape(4 * t, 4 * bones))
    return dem


def _read(dem, root, rest, inverse, influences) -> Skin:
    t, solved = int(dem.nF), int(dem.nB)
    blocks = np.asarray(dem.m, dtype=np.float64).reshape(t, 4, solved, 4).transpose(0, 2, 1, 3)
    dense = np.asarray(dem.get_weights(), dtype=np.float64).T[inverse]       # (N, B)
    index, weight = top_influences(dense, influences)
    return Skin(rest=rest, bone_index=index, bone_weight=weight, root=root,
                bones=np.ascontiguousarray(blocks))


# ----------------------------------------------------------------------------- playing it

def linear_blend(rest, bone_index, bone_weight, deform) -> np.ndarray:
    """(T, N, 3): linear blend skinning with deformation matrices `deform` (T, B, 4, 4)."""
    rest = np.asarray(rest, dtype=np.float64)
    out = np.zeros((len(deform), len(rest), 3))
    for k in range(bone_index.shape[1]):
        moved = apply(deform[:, bone_index[:, k]], rest[None, :, None, :])[:, :, 0]  # (T, N, 3)
        out += bone_weight[None, :, k, None] * moved
    return out


def error_stats(skinned: np.ndarray, frames: np.ndarray, rest: np.ndarray) -> dict:
    """How far the skinned animation is from the vertex animation: mean and p99 vertex distance
    as a share of the rest diagonal, and the mean as a share of the clip's mean motion."""
    diag = float(np.linalg.norm(np.ptp(rest, axis=0))) or 1.0
    err = np.linalg.norm(skinned - frames, axis=-1)
    motion = float(np.linalg.norm(frames - rest[None], axis=-1).mean())
    return {"mean": float(err.mean()) / diag, "p99": float(np.percentile(err, 99)) / diag,
            "share_of_motion": float(err.mean()) / motion if motion > 0 else 0.0}


# ----------------------------------------------------------------------------- the armature

def bone_rest_matrices(rest: np.ndarray, bone_index: np.ndarray, bone_weight: np.ndarray,
                       num_bones: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, 4, 4) rest matrices and (B,) lengths: each bone sits at the weighted centroid of the
    vertices it moves, its Y axis (a bone's length axis in Blender) along their longest spread.
    A bone that moves nothing sits at the mesh's centre."""
    diag = float(np.linalg.norm(np.ptp(rest, axis=0))) or 1.0
    mats = np.tile(np.eye(4), (num_bones, 1, 1))
    lengths = np.full(num_bones, 0.05 * diag)
    mats[:, :3, 3] = rest.mean(axis=0)
    for b in range(num_bones):
        w = (bone_weight * (bone_index == b)).sum(axis=1)
        if w.sum() <= 1e-9:
            continue
        head = (w[:, None] * rest).sum(axis=0) / w.sum()
        d = rest - head
        cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0) / w.sum()
        values, vectors = np.linalg.eigh(cov)
        y = vectors[:, 2]
        if y[np.argmax(np.abs(y))] < 0:
            y = -y          # a deterministic direction
        x = vectors[:, 1] - y * (vectors[:, 1] @ y)
        x /= np.linalg.norm(x) or 1.0
        z = np.cross(x, y)
        mats[b, :3, :3] = np.stack([x, y, z], axis=1)
        mats[b, :3, 3] = head
        lengths[b] = max(2.0 * np.sqrt(max(values[2], 0.0)), 0.02 * diag)
    return mats, lengths


def root_rest_matrix(rest: np.ndarray) -> tuple[np.ndarray, float]:
    """The root bone: at the bottom centre of the mesh, along +Y, unrotated (so its scale
    channels are the armature's axes)."""
    lo, hi = rest.min(axis=0), rest.max(axis=0)
    mat = np.eye(4)
    mat[:3, 3] = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]
    return mat, 0.25 * (float(np.linalg.norm(hi - lo)) or 1.0)


def pose_basis(root_rest: np.ndarray, bone_rest: np.ndarray, skin: Skin) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, each bone's local (basis) matrix such that Blender's parent-child composition
    reproduces the skin: root (T, 4, 4) and bones (T, B, 4, 4).

    Blender: pose = parent_pose @ inv(parent_rest) @ rest @ basis; deformation = pose @ inv(rest).
    With the root's basis inv(R) A R its deformation is A; a child's basis inv(Rb) M Rb then
    gives A M, the formula in this module's docstring.
    """
    root = np.linalg.inv(root_rest) @ skin.root @ root_rest
    bones = np.linalg.inv(bone_rest)[None] @ skin.bones @ bone_rest[None]
    return root, bones


def decompose(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 4, 4) matrices without shear as location (..., 3), quaternion w x y z (..., 4)
    and scale (..., 3). Quaternions along the first axis keep one sign so keys interpolate the
    short way."""
    loc = matrices[..., :3, 3].copy()
    basis = matrices[..., :3, :3]
    scale = np.linalg.norm(basis, axis=-2)
    rot = basis / np.where(scale > 0, scale, 1.0)[..., None, :]
    flip = np.linalg.det(rot) < 0
    scale[flip, 0] *= -1
    rot[flip, :, 0] *= -1
    quat = rotation_to_quaternion(rot)
    if quat.ndim >= 2:
        for f in range(1, quat.shape[0]):
            same = (quat[f] * quat[f - 1]).sum(axis=-1) < 0
            quat[f][same] *= -1
    return loc, quat, scale


def rotation_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices as unit quaternions (w, x, y, z)."""
    m = rot.reshape(-1, 3, 3)
    q = np.empty((len(m), 4))
    for i, r in enumerate(m):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q[i] = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            q[i] = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
            q[i] = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
            q[i] = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(rot.shape[:-2] + (4,))


def compose(loc: np.ndarray, quat: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The inverse of decompose(): (..., 4, 4) from location, quaternion (w x y z), scale."""
    q = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rot = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)
    out = np.zeros(loc.shape[:-1] + (4, 4))
    out[..., :3, :3] = rot * scale[..., None, :]
    out[..., :3, 3] = loc
    out[..., 3, 3] = 1.0
    return out


def pose_deformation(root_rest, bone_rest, root_basis, bone_basis) -> np.ndarray:
    """(T, B, 4, 4) deformation matrices of the children from the bones' basis matrices, by
    Blender's composition (the check that pose_basis() inverts it)."""
    root_pose = root_rest @ root_basis                                   # (T, 4, 4)
    rel = np.linalg.inv(root_rest)[None] @ bone_rest                     # (B, 4, 4)
    pose = root_pose[:, None] @ rel[None] @ bone_basis                   # (T, B, 4, 4)
    return pose @ np.linalg.inv(bone_rest)[None]

"""Creature-like meshes built around random skeletons, and linear-blend skinning to pose them.

Conventions (shared by every procedural mesh): +Z is up, the ground is z = 0, a creature faces -Y
(Blender's front view, the way Suzanne, Rigify rigs and imported glTF assets face), so its left
side is +X. Lengths are in metres-ish units around 1.

A creature is a set of bones (joint position, parent, body part) and a mesh made of one closed
surface per body part: limbs, heads and wings are rigidly bound to one bone each, so articulated
motions keep their edge lengths exactly; bodies that bend (snake and fish spines, tails) are one
tube whose vertices blend between the two nearest bones, which stays within a few percent.
Overlapping parts are not merged (no booleans): the joints look like ball joints, cheap and fine
for motion learning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.data import geometry as geo


@dataclass
class Skeleton:
    names: list[str]
    parents: np.ndarray   # (B,) parent bone index, -1 for the root (index 0)
    heads: np.ndarray     # (B, 3) joint each bone rotates about
    tails: np.ndarray     # (B, 3) far end (for reference / drawing)

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass
class ProcMesh:
    """A procedural rest mesh and what motions need to know about it.

    part_labels[i] indexes part_names for vertex i; capabilities name what articulated motions
    can drive (e.g. "wings", "tail", "legs4"). skin_bones/skin_weights hold two bones and their
    weights per vertex (None for meshes without a skeleton).
    """

    kind: str
    shape: str
    nouns: tuple[str, ...]
    vertices: np.ndarray
    faces: np.ndarray
    part_names: tuple[str, ...] = ("body",)
    part_labels: np.ndarray | None = None
    capabilities: frozenset = frozenset()
    skeleton: Skeleton | None = None
    skin_bones: np.ndarray | None = None
    skin_weights: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def part_indices(self, *names: str) -> np.ndarray:
        """Vertex indices of the named parts (empty if the mesh has none of them)."""
        if self.part_labels is None:
            return np.zeros(0, dtype=np.int64)
        ids = [self.part_names.index(n) for n in names if n in self.part_names]
        return np.flatnonzero(np.isin(self.part_labels, ids))

    def part_ranges(self) -> dict[str, list[list[int]]]:
        """Parts as lists of [start, stop) vertex ranges (compact and JSON friendly)."""
        if self.part_labels is None:
            return {}
        labels = self.part_labels
        cut = np.flatnonzero(np.diff(labels)) + 1
        starts, stops = np.r_[0, cut], np.r_[cut, len(labels)]
        out: dict[str, list[list[int]]] = {}
        for a, b in zip(starts, stops):
            out.setdefault(self.part_names[labels[a]], []).append([int(a), int(b)])
        return out


class RigBuilder:
    """Collects bones and skinned mesh pieces, then assembles a ProcMesh."""

    def __init__(self):
        self.names, self.parents, self.heads, self.tails = [], [], [], []
        self.verts, self.faces, self.bones, self.weights, self.parts = [], [], [], [], []
        self.count = 0

    def bone(self, name: str, parent: str | None, head, tail) -> int:
        self.names.append(name)
        self.parents.append(-1 if parent is None else self.names.index(parent))
        self.heads.append(np.asarray(head, float))
        self.tails.append(np.asarray(tail, float))
        return len(self.names) - 1

    def _add(self, v, f, bones, weights, part):
        self.verts.append(v)
        self.faces.append(f + self.count)
        self.bones.append(bones)
        self.weights.append(weights)
        self.parts.extend([part] * len(v))
        self.count += len(v)

    def rigid(self, v, f, bone: str, part: str):
        """A piece that moves with exactly one bone."""
        b = self.names.index(bone)
        n = len(v)
        self._add(v, f, np.full((n, 2), b), np.c_[np.ones(n), np.zeros(n)], part)

    def tube(self, v, f, s, chain: list[str], seg_len: float, part_of_s, blend: float = 0.5):
        """A piece along a chain of equal bones; `s` is each vertex's arclength along the chain.

        Within `blend` (fraction of a segment) of a joint the weight moves smoothly from one bone
        to the next (0.5/0.5 at the joint), so bending the chain bends the surface without cracks;
        the default 0.5 blends everywhere (weights change gradually from bone centre to bone
        centre), which spreads the stretch of a bent joint over many rings.
        `part_of_s` maps arclength to a part name, vectorised: (n,) -> list of names.
        """
        idx = np.array([self.names.index(c) for c in chain])
        j = np.clip(np.floor(s / seg_len).astype(int), 0, len(chain) - 1)
        u = np.clip(s / seg_len - j, 0.0, 1.0)
        other = j.copy()
        w_other = np.zeros(len(s))
        near_start = (u < blend) & (j > 0)
        near_end = (u > 1.0 - blend) & (j < len(chain) - 1)
        x = np.clip(u / blend, 0, 1)
        other[near_start] = j[near_start] - 1
        w_other[near_start] = 0.5 * (1.0 - _smoothstep(x[near_start]))
        y = np.clip((1.0 - u) / blend, 0, 1)
        other[near_end] = j[near_end] + 1
        w_other[near_end] = 0.5 * (1.0 - _smoothstep(y[near_end]))
        bones = np.stack([idx[j], idx[other]], axis=1)
        weights = np.stack([1.0 - w_other, w_other], axis=1)
        labels = part_of_s(s)
        self.verts.append(v)
        self.faces.append(f + self.count)
        self.bones.append(bones)
        self.weights.append(weights)
        self.parts.extend(labels)
        self.count += len(v)

    def build(self, kind, shape, nouns, capabilities, info=None) -> ProcMesh:
        part_names = tuple(dict.fromkeys(self.parts))
        lut = {p: i for i, p in enumerate(part_names)}
        return ProcMesh(
            kind=kind, shape=shape, nouns=tuple(nouns),
            vertices=np.concatenate(self.verts), faces=np.concatenate(self.faces).astype(np.int64),
            part_names=part_names,
            part_labels=np.array([lut[p] for p in self.parts], dtype=np.int16),
            capabilities=frozenset(capabilities),
            skeleton=Skeleton(list(self.names), np.array(self.parents), np.array(self.heads),
                              np.array(self.tails)),
            skin_bones=np.concatenate(self.bones).astype(np.int64),
            skin_weights=np.concatenate(self.weights),
            info=dict(info or {}),
        )


def _smoothstep(x):
    return x * x * (3.0 - 2.0 * x)


# ---------------------------------------------------------------------------------------------
# Posing
# ---------------------------------------------------------------------------------------------


def pose_displacements(mesh: ProcMesh, local: dict[str, np.ndarray], T: int,
                       root_rot: np.ndarray | None = None, root_pivot=None,
                       root_offset: np.ndarray | None = None) -> np.ndarray:
    """Linear-blend-skinned displacement (T, N, 3) of the mesh for per-bone rotations.

    `local[name]` is a (T, 3, 3) rotation of that bone about its joint, expressed in rest-pose
    world axes and applied after its parent's motion (forward kinematics). The root may also
    rotate about `root_pivot` and translate by `root_offset` (T, 3). Working with displacements
    (A - I) v + t keeps frame 0 exactly at rest when every rotation there is the identity.
    """
    sk = mesh.skeleton
    b_count = len(sk.names)
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    A = np.empty((b_count, T, 3, 3))
    t = np.empty((b_count, T, 3))
    pivot = np.zeros(3) if root_pivot is None else np.asarray(root_pivot, float)
    r0 = eye if root_rot is None else root_rot
    A[0] = r0
    t[0] = pivot - r0 @ pivot + (0.0 if root_offset is None else root_offset)
    for b in range(1, b_count):
        p = sk.parents[b]
        r = local.get(sk.names[b])
        if r is None:
            A[b], t[b] = A[p], t[p]
            continue
        h = sk.heads[b]
        A[b] = A[p] @ r
        t[b] = (A[p] @ (h - r @ h)[..., None])[..., 0] + t[p]
    if sk.names[0] in local:
        raise ValueError("rotate the root through root_rot/root_pivot, not `local`")
    v = mesh.vertices
    disp = np.zeros((T, len(v), 3))
    # group vertices by bone: one small matrix product per (bone, weight slot)
    for k in range(2):
        bones, w = mesh.skin_bones[:, k], mesh.skin_weights[:, k]
        for b in np.unique(bones[w > 0]):
            idx = np.flatnonzero((bones == b) & (w > 0))
            moved = v[idx] @ (A[b] - np.eye(3)).transpose(0, 2, 1) + t[b][:, None, :]
            disp[:, idx] += w[idx][None, :, None] * moved
    return disp


# ---------------------------------------------------------------------------------------------
# Builders (each takes a Generator and a detail level: segments around a limb)
# ---------------------------------------------------------------------------------------------

QUADRUPED_NOUNS = ("dog", "cat", "horse", "cow", "fox", "wolf", "bear", "deer", "lion", "pig",
                   "goat", "animal")
DRAGON_NOUNS = ("dragon", "griffin", "winged horse", "winged beast")
BIRD_NOUNS = ("bird", "eagle", "crow", "parrot", "pigeon", "seagull", "owl", "duck")
HUMANOID_NOUNS = ("person", "man", "woman", "robot", "character", "kid", "soldier", "zombie")
SNAKE_NOUNS = ("snake", "serpent", "cobra", "python", "worm")
FISH_NOUNS = ("fish", "shark", "goldfish", "salmon", "trout", "tuna")


def _limb(rb: RigBuilder, bone: str, part: str, start, end, r0, r1, seg, ring, flat=(1.0, 1.0)):
    start, end = np.asarray(start, float), np.asarray(end, float)
    v, f = geo.capsule(seg, ring, float(np.linalg.norm(end - start)), r0, r1)
    v = v * np.array([flat[0], flat[1], 1.0])
    rb.rigid(geo.place_along(v, start, end), f, bone, part)


def _blob(rb: RigBuilder, bone: str, part: str, centre, radii, seg, ring):
    v, f = geo.uv_sphere(seg, ring)
    rb.rigid(v * np.asarray(radii) + np.asarray(centre, float), f, bone, part)


def _chain_tube(rb: RigBuilder, chain, start, direction, length, radius_of_s, seg, rings,
                part_of_s, flat_x: float = 1.0):
    """A tube from `start` along `direction` over the equal bones in `chain`."""
    s = np.linspace(0.0, length, rings)
    r = radius_of_s(s)
    v, f = geo.lathe(np.r_[0.0, r, 0.0], np.r_[-r[0] * 0.5, s, length + r[-1] * 0.5], seg)
    arc = np.clip(v[:, 2], 0.0, length)
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    rot = geo.rotation_between([0, 0, 1], direction)
    v = (v * np.array([flat_x, 1.0, 1.0])) @ rot.T + np.asarray(start, float)
    rb.tube(v, f, arc, chain, length / len(chain), part_of_s)


def quadruped(rng: np.random.Generator, seg: int, winged: bool = False) -> ProcMesh:
    ring = max(3, seg // 2 - 1)
    L = rng.uniform(0.8, 1.4)
    rb_ = L * rng.uniform(0.16, 0.26)
    leg_len = L * rng.uniform(0.35, 0.65)
    leg_r = rb_ * rng.uniform(0.25, 0.4)
    hz = leg_len + rb_ * 0.4
    rig = RigBuilder()
    rig.bone("body", None, [0, 0, hz], [0, -L / 2, hz])
    _blob(rig, "body", "body", [0, 0, hz], [rb_ * rng.uniform(0.85, 1.2), L / 2 + rb_ * 0.3, rb_],
          seg + 4, ring + 3)
    # neck and head, forward (-Y) and up
    nl = L * rng.uniform(0.15, 0.35)
    neck0 = np.array([0, -L / 2 + rb_ * 0.3, hz + rb_ * 0.4])
    neck1 = neck0 + np.array([0, -nl * 0.55, nl])
    rig.bone("neck", "body", neck0, neck1)
    _limb(rig, "neck", "neck", neck0, neck1, rb_ * 0.45, rb_ * 0.35, seg, ring)
    hr = rb_ * rng.uniform(0.6, 0.9)
    hl = hr * rng.uniform(1.1, 1.8)
    rig.bone("head", "neck", neck1, neck1 + [0, -hl, 0])
    hc = neck1 + np.array([0, -hl * 0.45, hr * 0.2])
    _blob(rig, "head", "head", hc, [hr * 0.8, hl * 0.6, hr * 0.75], seg, ring + 1)
    _limb(rig, "head", "head", hc, hc + [0, -hl * 0.75, -hr * 0.25], hr * 0.45, hr * 0.35,
          max(6, seg - 2), max(2, ring - 1))  # snout
    for side in (-1, 1):
        ear0 = hc + np.array([side * hr * 0.45, hl * 0.1, hr * 0.5])
        ev, ef = geo.cone(max(6, seg // 2), 1, hr * 0.22, hr * rng.uniform(0.4, 0.9))
        rig.rigid(geo.place_along(ev, ear0, ear0 + [side * 0.3, 0, 1]), ef, "head", "head")
    # tail: a tube over four bones going back (+Y)
    tl = L * rng.uniform(0.3, 0.8)
    tilt = rng.uniform(-0.7, 0.5)
    tdir = np.array([0.0, np.cos(tilt), np.sin(tilt)])
    t0 = np.array([0, L / 2 + rb_ * 0.1, hz + rb_ * 0.35])
    names = [f"tail{k}" for k in range(4)]
    for k, n in enumerate(names):
        rig.bone(n, "body" if k == 0 else names[k - 1], t0 + tdir * tl * k / len(names),
                 t0 + tdir * tl * (k + 1) / len(names))
    tr = rb_ * rng.uniform(0.15, 0.3)
    _chain_tube(rig, names, t0, tdir, tl, lambda s: tr * (1.0 - 0.7 * s / tl), seg, 20,
                lambda s: ["tail"] * len(s))
    # legs: front pair at -Y, back pair at +Y; upper and lower bone each
    for fb, y in (("f", -(L / 2 - rb_ * 0.5)), ("b", L / 2 - rb_ * 0.5)):
        for lr, x in (("l", rb_ * 0.55), ("r", -rb_ * 0.55)):
            name = f"leg_{fb}{lr}"
            hip = np.array([x, y, hz - rb_ * 0.2])
            foot = np.array([x, y, leg_r])
            knee = (hip + foot) / 2 + np.array([0, 0.03 * L * (1 if fb == "b" else -1), 0])
            rig.bone(name + "_up", "body", hip, knee)
            rig.bone(name + "_lo", name + "_up", knee, foot)
            _limb(rig, name + "_up", name, hip, knee, leg_r * 1.2, leg_r, seg, ring)
            _limb(rig, name + "_lo", name, knee, foot, leg_r, leg_r * 0.85, seg, ring)
    caps = {"legs4", "tail", "head", "quadruped"}
    if winged:
        span = L * rng.uniform(0.6, 1.0)
        chord = L * rng.uniform(0.25, 0.4)
        _wings(rig, rng, np.array([rb_ * 0.6, -L * 0.15, hz + rb_ * 0.7]), span, chord, rb_ * 0.12,
               seg, ring)
        caps.add("wings")
    info = {"length": L, "leg_length": leg_len, "height": hz + rb_}
    return rig.build("quadruped", "winged_quadruped" if winged else "quadruped",
                     DRAGON_NOUNS if winged else QUADRUPED_NOUNS, caps, info)


def _wings(rig: RigBuilder, rng, shoulder_l, span, chord, thick, seg, ring):
    """Two-bone wings spread sideways (left = +X), flat vertically, chord along Y."""
    lift = rng.uniform(-0.1, 0.25)
    for side, name, part in ((1, "wing_l", "wing_l"), (-1, "wing_r", "wing_r")):
        root = shoulder_l * np.array([side, 1, 1])
        d = np.array([side * np.cos(lift), 0.0, np.sin(lift)])
        mid = root + d * span * 0.45
        tip = root + d * span
        rig.bone(name + "0", "body", root, mid)
        rig.bone(name + "1", name + "0", mid, tip)
        # flat capsules: local x becomes world +-Z (thin), local y stays world Y (the chord)
        for bone, a, b, c0, c1 in ((name + "0", root, mid, 1.0, 0.8), (name + "1", mid, tip, 0.8, 0.35)):
            v, f = geo.capsule(seg, ring, float(np.linalg.norm(b - a)), chord * 0.5 * c0,
                               chord * 0.5 * c1)
            v = v * np.array([thick / (chord * 0.5), 1.0, 1.0])
            rig.rigid(geo.place_along(v, a, b), f, bone, part)


def bird(rng: np.random.Generator, seg: int) -> ProcMesh:
    ring = max(3, seg // 2 - 1)
    bl = rng.uniform(0.5, 0.9)
    br = bl * rng.uniform(0.22, 0.32)
    leg_len = bl * rng.uniform(0.25, 0.5)
    hz = leg_len + br * 0.8
    rig = RigBuilder()
    rig.bone("body", None, [0, 0, hz], [0, -bl / 2, hz])
    _blob(rig, "body", "body", [0, 0, hz], [br, bl / 2, br * rng.uniform(0.85, 1.05)], seg + 4, ring + 3)
    neck0 = np.array([0, -bl * 0.38, hz + br * 0.5])
    nh = bl * rng.uniform(0.1, 0.3)
    neck1 = neck0 + np.array([0, -nh * 0.3, nh])
    rig.bone("neck", "body", neck0, neck1)
    _limb(rig, "neck", "neck", neck0, neck1, br * 0.45, br * 0.4, seg, ring)
    hr = br * rng.uniform(0.5, 0.75)
    rig.bone("head", "neck", neck1, neck1 + [0, -hr, 0])
    hc = neck1 + np.array([0, -hr * 0.3, hr * 0.4])
    _blob(rig, "head", "head", hc, [hr, hr * 1.1, hr], seg, ring + 1)
    bv, bf = geo.cone(max(6, seg // 2), 2, hr * 0.4, hr * rng.uniform(0.7, 1.5))
    rig.rigid(geo.place_along(bv, hc + [0, -hr * 0.8, -hr * 0.1], hc + [0, -3, -0.6]), bf, "head", "head")
    span = bl * rng.uniform(0.7, 1.4)
    chord = bl * rng.uniform(0.3, 0.45)
    _wings(rig, rng, np.array([br * 0.8, -bl * 0.12, hz + br * 0.35]), span, chord, br * 0.1, seg, ring)
    # tail fan: flat, two bones going back (+Y) and slightly down
    tl = bl * rng.uniform(0.3, 0.6)
    tdir = np.array([0.0, 1.0, -rng.uniform(0.0, 0.4)])
    tdir /= np.linalg.norm(tdir)
    t0 = np.array([0, bl * 0.4, hz + br * 0.1])
    rig.bone("tail0", "body", t0, t0 + tdir * tl * 0.5)
    rig.bone("tail1", "tail0", t0 + tdir * tl * 0.5, t0 + tdir * tl)
    fan = br * rng.uniform(0.5, 0.9)
    for k, bone in enumerate(("tail0", "tail1")):
        a, b = t0 + tdir * tl * k * 0.5, t0 + tdir * tl * (k + 1) * 0.5
        v, f = geo.capsule(seg, ring, tl * 0.5, fan * (0.6 + 0.4 * k), fan * (0.9 + 0.3 * k))
        v = v * np.array([1.0, 0.15, 1.0])  # local y -> world vertical after placing along +Y
        rig.rigid(geo.place_along(v, a, b), f, bone, "tail")
    leg_r = br * 0.12
    for lr, x in (("l", br * 0.45), ("r", -br * 0.45)):
        hip = np.array([x, bl * 0.05, hz - br * 0.6])
        foot = np.array([x, 0.0, leg_r])
        knee = (hip + foot) / 2 + np.array([0, 0.04 * bl, 0])
        rig.bone(f"leg_{lr}_up", "body", hip, knee)
        rig.bone(f"leg_{lr}_lo", f"leg_{lr}_up", knee, foot)
        _limb(rig, f"leg_{lr}_up", f"leg_{lr}", hip, knee, leg_r * 1.4, leg_r, max(6, seg - 4), ring)
        _limb(rig, f"leg_{lr}_lo", f"leg_{lr}", knee, foot, leg_r, leg_r, max(6, seg - 4), ring)
        _limb(rig, f"leg_{lr}_lo", f"leg_{lr}", foot, foot + [0, -bl * 0.15, 0], leg_r, leg_r * 0.6,
              max(6, seg - 4), max(2, ring - 1))
    info = {"length": bl, "leg_length": leg_len, "height": hz + br}
    return rig.build("bird", "bird", BIRD_NOUNS, {"wings", "legs2", "tail", "head", "bird"}, info)


def humanoid(rng: np.random.Generator, seg: int) -> ProcMesh:
    ring = max(3, seg // 2 - 1)
    H = rng.uniform(1.5, 2.0)
    leg_len = H * rng.uniform(0.42, 0.5)
    torso = H * rng.uniform(0.28, 0.34)
    hr = H * rng.uniform(0.055, 0.075)
    sw = H * rng.uniform(0.1, 0.14)
    hw = sw * rng.uniform(0.45, 0.7)
    arm = H * rng.uniform(0.33, 0.42)
    limb_r = H * rng.uniform(0.022, 0.035)
    spread = rng.uniform(0.12, 0.5)  # arm angle from the body at rest (A pose)
    rig = RigBuilder()
    hip_c = np.array([0, 0, leg_len])
    neck = hip_c + np.array([0, 0, torso])
    rig.bone("pelvis", None, hip_c, hip_c + [0, 0, 0.1])
    _blob(rig, "pelvis", "body", hip_c + [0, 0, limb_r], [hw + limb_r * 1.6, limb_r * 2.6, limb_r * 2.5],
          seg, ring + 1)
    rig.bone("spine", "pelvis", hip_c + [0, 0, limb_r * 2], neck)
    v, f = geo.capsule(seg + 4, ring + 1, torso * 0.6, sw * 0.75, sw * 0.9)
    v = v * np.array([1.0, rng.uniform(0.45, 0.65), 1.0])
    rig.rigid(v + hip_c + [0, 0, torso * 0.2], f, "spine", "body")
    rig.bone("head", "spine", neck, neck + [0, 0, hr * 2])
    _limb(rig, "head", "head", neck - [0, 0, limb_r], neck + [0, 0, hr * 0.8], limb_r * 1.3, limb_r * 1.3,
          seg, ring)
    _blob(rig, "head", "head", neck + [0, 0, hr * 1.6], [hr * 0.9, hr, hr * 1.15], seg + 2, ring + 2)
    for lr, side in (("l", 1.0), ("r", -1.0)):
        sh = neck + np.array([side * sw, 0, -hr * 0.6])
        d = np.array([side * np.sin(spread), 0, -np.cos(spread)])
        elbow, wrist = sh + d * arm * 0.5, sh + d * arm
        rig.bone(f"arm_{lr}_up", "spine", sh, elbow)
        rig.bone(f"arm_{lr}_lo", f"arm_{lr}_up", elbow, wrist)
        _limb(rig, f"arm_{lr}_up", f"arm_{lr}", sh, elbow, limb_r * 1.1, limb_r, seg, ring)
        _limb(rig, f"arm_{lr}_lo", f"arm_{lr}", elbow, wrist, limb_r, limb_r * 0.85, seg, ring)
        _blob(rig, f"arm_{lr}_lo", f"arm_{lr}", wrist + d * limb_r * 1.8,
              [limb_r * 1.3, limb_r * 0.8, limb_r * 1.8], max(6, seg - 2), ring)
        hip = hip_c + np.array([side * hw, 0, 0])
        knee, ankle = hip + [0, -0.02 * H, -leg_len * 0.5], np.array([side * hw, 0, limb_r * 1.2])
        rig.bone(f"leg_{lr}_up", "pelvis", hip, knee)
        rig.bone(f"leg_{lr}_lo", f"leg_{lr}_up", knee, ankle)
        _limb(rig, f"leg_{lr}_up", f"leg_{lr}", hip, knee, limb_r * 1.5, limb_r * 1.2, seg, ring)
        _limb(rig, f"leg_{lr}_lo", f"leg_{lr}", knee, ankle, limb_r * 1.2, limb_r, seg, ring)
        _limb(rig, f"leg_{lr}_lo", f"leg_{lr}", ankle, ankle + [0, -H * 0.1, 0], limb_r, limb_r * 0.9,
              max(6, seg - 2), ring)
    info = {"height": leg_len + torso + 2 * hr, "leg_length": leg_len, "arm_length": arm}
    return rig.build("humanoid", "humanoid", HUMANOID_NOUNS,
                     {"arms", "legs2", "head", "humanoid"}, info)


def _spine_chain(rig: RigBuilder, count: int, start, direction, length, root: int):
    """Bones seg0 (at `start`, the head end) .. seg{count-1} along `direction`. Bone `root` is the
    root and the others hang off it toward both ends, each rotating about the joint nearer the
    root: a snake is rooted in the middle, a fish near its head (which stays almost still)."""
    direction = np.asarray(direction, float)
    joints = [np.asarray(start, float) + direction * length * k / count for k in range(count + 1)]
    names = [f"seg{k}" for k in range(count)]
    rig.bone(names[root], None, (joints[root] + joints[root + 1]) / 2, joints[root + 1])
    for k in range(root + 1, count):
        rig.bone(names[k], names[k - 1], joints[k], joints[k + 1])
    for k in range(root - 1, -1, -1):
        rig.bone(names[k], names[k + 1], joints[k + 1], joints[k])
    return names


def snake(rng: np.random.Generator, seg: int) -> ProcMesh:
    L = rng.uniform(1.5, 3.0)
    r = L * rng.uniform(0.018, 0.032)  # thin: real S-curves stretch a thick body's skin
    count = int(rng.integers(14, 23))
    rig = RigBuilder()
    start = np.array([0.0, -L / 2, r])
    names = _spine_chain(rig, count, start, [0, 1, 0], L, root=count // 2)
    head_len = L * rng.uniform(0.05, 0.08)

    def radius(s):
        x = s / L
        head = 1.0 + 0.35 * np.exp(-((x - head_len / L * 0.6) / 0.03) ** 2)
        taper = 1.0 - 0.85 * (np.clip(x - 0.6, 0.0, None) / 0.4) ** 1.5
        return r * head * taper * np.minimum(1.0, 0.4 + x / 0.02)

    def part(s):
        return np.where(s < head_len, "head", np.where(s > 0.7 * L, "tail", "body")).tolist()

    rings = count * 6
    _chain_tube(rig, names, start, [0, 1, 0], L, radius, seg, rings, part)
    return rig.build("snake", "snake", SNAKE_NOUNS, {"snake"}, {"length": L, "radius": r})


def fish(rng: np.random.Generator, seg: int) -> ProcMesh:
    L = rng.uniform(0.8, 1.5)
    R = L * rng.uniform(0.1, 0.18)
    count = 6
    zc = R * 1.5
    rig = RigBuilder()
    start = np.array([0.0, -L / 2, zc])
    names = _spine_chain(rig, count, start, [0, 1, 0], L, root=1)
    body_len = L * 0.85

    def radius(s):
        x = np.clip(s / body_len, 0, 1)
        return R * np.maximum(np.sin(np.pi * np.minimum(x * 1.15, 1.0)) ** 0.7, 0.12) * (1 - 0.3 * x)

    def part(s):
        return np.where(s < 0.2 * L, "head", np.where(s > 0.6 * L, "tail", "body")).tolist()

    _chain_tube(rig, names, start, [0, 1, 0], body_len, radius, seg + 2, 42, part,
                flat_x=rng.uniform(0.4, 0.65))
    # caudal fin on the last bone: a flat vertical fan beyond the body
    fin_h = R * rng.uniform(1.0, 1.8)
    base = start + np.array([0, body_len * 0.97, 0])
    for sgn in (1, -1):
        v, f = geo.capsule(seg, 3, fin_h, R * 0.18, R * 0.45)
        v = v * np.array([0.25, 1.0, 1.0])
        tip = base + np.array([0, L * 0.18, sgn * fin_h])
        rig.rigid(geo.place_along(v, base, tip), f, names[-1], "tail")
    # dorsal fin on a middle bone
    v, f = geo.cone(max(6, seg // 2), 2, R * 0.45, R * rng.uniform(0.5, 1.0))
    v = v * np.array([0.25, 1.6, 1.0])
    rig.rigid(v + start + np.array([0, L * 0.45, R * 0.85]), f, names[count // 2], "fins")
    return rig.build("fish", "fish", FISH_NOUNS, {"fish"}, {"length": L, "radius": R})

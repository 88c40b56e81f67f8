"""Motion families of the procedural data set: what each one does to a rest mesh.

Every family turns a rest mesh and a few parameters into per-frame displacements (T, N, 3) over
normalised time t = 0..1 (frame 0 = t 0). Conventions are those of `creatures`: +Z up, ground at
the lowest rest vertex, "forward" is -Y, an object's "left" is +X, "clockwise" is as seen from above
(a negative angle about +Z).

Parameters come in categories that the captions can state: speed (slow / normal / fast), amplitude
(small / normal / large) and a family-specific direction. Each category maps to a number (cycles
over the clip, an angle, a height as a fraction of the mesh size), scaled by a small random factor
(+-10-15%) so that categories never overlap but samples inside one are not identical.

Two rules keep the data clean for learning:
- frame 0 is the rest pose exactly: motions are written as displacements that are exactly zero at
  t = 0 (rotations of angle 0 are the identity matrix, oscillations with a phase offset are faded in
  by a short envelope);
- motions are smooth (C2 eases, sines), and rigid families (jump, spin, sway, shake, float up, sink,
  fall over, roll) move the mesh as one rigid body, so edge lengths are kept exactly; articulated
  families rotate rigid limbs, and only blended tubes (tails, spines) stretch by a few percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from backend.data import geometry as geo
from backend.data.creatures import ProcMesh, pose_displacements

UP = np.array([0.0, 0.0, 1.0])
DIRECTIONS = {
    "forward": np.array([0.0, -1.0, 0.0]),
    "backward": np.array([0.0, 1.0, 0.0]),
    "left": np.array([1.0, 0.0, 0.0]),
    "right": np.array([-1.0, 0.0, 0.0]),
}
DEG = np.pi / 180.0


@dataclass(frozen=True)
class Family:
    """A motion family: its name, which meshes it applies to, its parameter categories.

    requires: alternatives of capability sets; the mesh must have every capability of at least one
    of them (an empty tuple means any mesh). moves: the parts an articulated family drives.
    rigid: whole-body rigid motion (edge lengths preserved exactly).
    min_aspect: least height / largest horizontal extent of a mesh the family suits.
    speeds/amplitudes: category -> number (meaning documented per family); directions: names.
    """

    name: str
    articulated: bool
    requires: tuple[frozenset, ...]
    rigid: bool
    speeds: dict
    amplitudes: dict
    directions: tuple[str, ...]
    moves: tuple[str, ...]
    fn: Callable
    min_aspect: float = 0.0

    def applies_to(self, capabilities) -> bool:
        return not self.requires or any(req <= set(capabilities) for req in self.requires)

    def suits(self, mesh: ProcMesh) -> bool:
        """Capabilities present and, for height-driven deformations (twist, bend, melt, wobble),
        a mesh tall enough: on a flat, wide mesh they shear a tiny height into folds."""
        return self.applies_to(mesh.capabilities) and aspect(mesh) >= self.min_aspect


@dataclass(frozen=True)
class MotionParams:
    speed: str
    amplitude: str
    direction: str
    speed_value: float
    amplitude_value: float

    def as_meta(self) -> dict:
        return {"speed": self.speed, "amplitude": self.amplitude, "direction": self.direction,
                "speed_value": round(float(self.speed_value), 6),
                "amplitude_value": round(float(self.amplitude_value), 6)}


# ---------------------------------------------------------------------------------------------
# Time profiles
# ---------------------------------------------------------------------------------------------


def smoother(u):
    """C2 ease 0 -> 1 (Perlin's smootherstep) on u clipped to [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (u * (u * 6.0 - 15.0) + 10.0)


def envelope(t, fade: float = 0.15):
    """Fades an oscillation in over the first `fade` of the clip (0 at t = 0, 1 after)."""
    return smoother(np.asarray(t) / fade)


@lru_cache(maxsize=64)
def _travel_table(ramp: float, n: int = 2049):
    s = np.linspace(0.0, 1.0, n)
    v = smoother(s / ramp) * smoother((1.0 - s) / ramp)
    pos = np.concatenate([[0.0], np.cumsum((v[1:] + v[:-1]) * 0.5)])
    return s, pos / pos[-1]


def travel(t, ramp: float = 0.15):
    """Distance fraction 0 -> 1 covered at a steady speed that eases in and out over `ramp`."""
    s, pos = _travel_table(float(ramp))
    return np.interp(t, s, pos)


# ---------------------------------------------------------------------------------------------
# Shape helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Rest-pose measurements the whole-body motions scale themselves by."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def centre(self):
        return (self.lo + self.hi) / 2.0

    @property
    def base(self):
        c = self.centre
        return np.array([c[0], c[1], self.lo[2]])

    @property
    def size(self) -> float:
        return float(np.max(self.hi - self.lo))

    @property
    def height(self) -> float:
        # flat meshes still get a usable height so height-relative motions stay defined
        return max(float(self.hi[2] - self.lo[2]), 0.05 * self.size)


def _frame(mesh: ProcMesh) -> Frame:
    return Frame(mesh.vertices.min(axis=0), mesh.vertices.max(axis=0))


def aspect(mesh: ProcMesh) -> float:
    """Height over the largest horizontal extent of the rest mesh."""
    ext = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    return float(ext[2] / max(ext[0], ext[1], 1e-12))


def _rigid(points, rot, pivot, offset=None):
    """Displacement of a rigid motion x -> R (x - pivot) + pivot + offset, (T, N, 3)."""
    rel = points - pivot
    disp = np.einsum("tij,nj->tni", rot - np.eye(3), rel)
    if offset is not None:
        disp += offset[:, None, :]
    return disp


def _translate(n: int, offset):
    return np.broadcast_to(offset[:, None, :], (offset.shape[0], n, 3)).copy()


def _scale_about(points, pivot, sx, sy, sz):
    """Displacement of per-frame axis scales (each (T,)) about a pivot."""
    rel = points - pivot
    s = np.stack([sx, sy, sz], axis=-1) - 1.0  # (T, 3)
    return s[:, None, :] * rel[None]


# ---------------------------------------------------------------------------------------------
# Articulated families
# ---------------------------------------------------------------------------------------------


def _bones(mesh: ProcMesh, prefix: str) -> list[str]:
    return [n for n in mesh.skeleton.names if n.startswith(prefix)]


def flap_wings(mesh, p, t):
    c, amp = p.speed_value, p.amplitude_value
    wave = amp * np.sin(2 * np.pi * c * t)
    lag = amp * 0.45 * np.sin(2 * np.pi * c * t - 0.8) * envelope(t)
    local = {}
    for side, axis in (("wing_l", [0, -1, 0]), ("wing_r", [0, 1, 0])):
        local[side + "0"] = geo.rotation(axis, wave)
        local[side + "1"] = geo.rotation(axis, lag)
    return pose_displacements(mesh, local, len(t))


def wag_tail(mesh, p, t):
    c, amp = p.speed_value, p.amplitude_value
    names = _bones(mesh, "tail")
    local = {}
    for k, name in enumerate(names):
        angle = amp / len(names) * np.sin(2 * np.pi * c * t - 0.6 * k)
        if k:
            angle = angle * envelope(t)
        local[name] = geo.rotation(UP, angle)
    return pose_displacements(mesh, local, len(t))


def walk(mesh, p, t):
    """Leg cycle: hips swing about X, knees lift the foot during the forward swing; quadrupeds
    walk with a lateral sequence (quarter-cycle offsets) and trot (diagonal pairs) when fast;
    humanoids swing their arms against their legs. The body travels one stride per cycle."""
    c, amp = p.speed_value, p.amplitude_value
    env = envelope(t, 0.2)
    sign = -1.0 if p.direction == "backward" else 1.0
    if "legs4" in mesh.capabilities:
        if p.speed == "fast":
            phases = {"leg_fl": 0.0, "leg_br": 0.0, "leg_fr": np.pi, "leg_bl": np.pi}
        else:
            phases = {"leg_bl": 0.0, "leg_fl": np.pi / 2, "leg_br": np.pi, "leg_fr": 1.5 * np.pi}
    else:
        phases = {"leg_l": 0.0, "leg_r": np.pi}
    local = {}
    x_axis = np.array([1.0, 0.0, 0.0])
    for leg, ph in phases.items():
        arg = 2 * np.pi * c * t + ph
        swing = sign * amp * np.sin(arg) * env
        lift = 1.2 * amp * np.maximum(0.0, sign * np.cos(arg)) ** 2 * env
        local[leg + "_up"] = geo.rotation(x_axis, -swing)
        local[leg + "_lo"] = geo.rotation(x_axis, lift)
        arm = leg.replace("leg", "arm")
        if arm + "_up" in mesh.skeleton.names:
            local[arm + "_up"] = geo.rotation(x_axis, 0.8 * swing)
    leg_len = float(mesh.info.get("leg_length", 0.5))
    stride = 2.0 * leg_len * np.sin(amp)
    offset = np.zeros((len(t), 3))
    if p.direction in ("forward", "backward"):
        offset += DIRECTIONS[p.direction] * (stride * c) * travel(t, 0.2)[:, None]
    offset[:, 2] += 0.04 * leg_len * np.sin(2 * np.pi * c * t) ** 2 * env
    return pose_displacements(mesh, local, len(t), root_offset=offset)


def wave_arm(mesh, p, t):
    """Raise one arm sideways over the first 30% of the clip, then wave the forearm."""
    side = "l" if p.direction == "left" else "r"
    axis = np.array([0.0, -1.0, 0.0]) if side == "l" else np.array([0.0, 1.0, 0.0])
    raise_angle = 145 * DEG * smoother(t / 0.3)
    wave = p.amplitude_value * np.sin(2 * np.pi * p.speed_value * np.clip(t - 0.3, 0, None))
    wave *= smoother((t - 0.3) / 0.15)
    local = {f"arm_{side}_up": geo.rotation(axis, raise_angle),
             f"arm_{side}_lo": geo.rotation(axis, wave + 20 * DEG * smoother(t / 0.3))}
    return pose_displacements(mesh, local, len(t))


def raise_arms(mesh, p, t):
    angle = p.amplitude_value * np.sin(np.pi * p.speed_value * t) ** 2
    local = {"arm_l_up": geo.rotation([0, -1, 0], angle), "arm_r_up": geo.rotation([0, 1, 0], angle)}
    return pose_displacements(mesh, local, len(t))


def nod_head(mesh, p, t):
    angle = p.amplitude_value * np.sin(np.pi * p.speed_value * t) ** 2
    return pose_displacements(mesh, {"head": geo.rotation([1, 0, 0], angle)}, len(t))


def shake_head(mesh, p, t):
    angle = p.amplitude_value * np.sin(2 * np.pi * p.speed_value * t)
    return pose_displacements(mesh, {"head": geo.rotation(UP, angle)}, len(t))


def _chain_wave(mesh, t, curvature):
    """Bend a spine (seg0 = head end, rooted at some segment) by per-joint angles curvature(x, t).

    x is the joint's position along the body (0 head .. 1 tail). Bones tailward of the root turn
    by +angle about +Z relative to their parent, bones headward by -angle, so the body's heading
    integrates the same curvature in both directions from the root.
    """
    names = sorted(_bones(mesh, "seg"), key=lambda n: int(n[3:]))  # head to tail
    count = len(names)
    root = names.index(mesh.skeleton.names[0])
    local = {}
    for k in range(count - 1):  # joint between seg k and seg k+1 at x = (k+1)/count
        x = (k + 1) / count
        angle = curvature(x, t)
        if k >= root:
            local[names[k + 1]] = geo.rotation(UP, angle)
        else:
            local[names[k]] = geo.rotation(UP, -angle)
    return local


def swim(mesh, p, t):
    """Fish undulation: a wave travels from head to tail, its amplitude growing behind the
    thick front third of the body."""
    c, amp = p.speed_value, p.amplitude_value
    env = envelope(t, 0.2)

    def curvature(x, tt):  # the thick front barely bends, the thin rear carries the wave
        return amp * (0.1 + 1.6 * max(0.0, x - 0.3)) * np.sin(2 * np.pi * (c * tt - x)) * env

    local = _chain_wave(mesh, t, curvature)
    offset = np.zeros((len(t), 3))
    if p.direction == "forward":
        offset += DIRECTIONS["forward"] * (0.5 * c * float(mesh.info["length"])) * travel(t, 0.2)[:, None]
    return pose_displacements(mesh, local, len(t), root_offset=offset)


def slither(mesh, p, t):
    """Serpentine: a constant-amplitude curvature wave travels tailward; the body moves forward."""
    c, heading = p.speed_value, p.amplitude_value
    count = len(_bones(mesh, "seg"))
    waves = 1.0
    per_joint = heading * 2 * np.pi * waves / count  # heading amplitude -> angle per joint
    env = envelope(t, 0.2)

    def curvature(x, tt):  # the head stays straight (it leads), the body carries the wave
        return per_joint * smoother(x / 0.2) * np.sin(2 * np.pi * (waves * x - c * tt)) * env

    local = _chain_wave(mesh, t, curvature)
    offset = np.zeros((len(t), 3))
    if p.direction == "forward":
        dist = 0.6 * c * float(mesh.info["length"]) / waves
        offset += DIRECTIONS["forward"] * dist * travel(t, 0.2)[:, None]
    return pose_displacements(mesh, local, len(t), root_offset=offset)


def rear_up(mesh, p, t):
    """The body pitches up about the hind hips; hind legs counter-rotate to stay planted and the
    front legs fold."""
    angle = p.amplitude_value * np.sin(np.pi * p.speed_value * t) ** 2
    sk = mesh.skeleton
    hips = [sk.heads[sk.index(f"leg_b{s}_up")] for s in ("l", "r")]
    pivot = (hips[0] + hips[1]) / 2.0
    x_axis = np.array([1.0, 0.0, 0.0])
    local = {"leg_bl_up": geo.rotation(x_axis, angle), "leg_br_up": geo.rotation(x_axis, angle)}
    for s in ("l", "r"):
        local[f"leg_f{s}_up"] = geo.rotation(x_axis, 0.8 * angle)
        local[f"leg_f{s}_lo"] = geo.rotation(x_axis, 1.2 * angle)
    return pose_displacements(mesh, local, len(t), root_rot=geo.rotation(x_axis, -angle),
                              root_pivot=pivot)


# ---------------------------------------------------------------------------------------------
# Whole-body families (any mesh)
# ---------------------------------------------------------------------------------------------


def jump(mesh, p, t):
    """Rigid ballistic jumps: each jump crouches still for 15% of its window, flies a parabola
    and lands at 90%; directional jumps travel 0.6 x size per jump while airborne."""
    fr = _frame(mesh)
    n = int(round(p.speed_value))
    k = np.minimum(np.floor(t * n), n - 1)  # which jump; the last frame ends the last one
    w = np.clip((t * n - k - 0.15) / 0.75, 0.0, 1.0)  # flight progress inside this jump
    z = p.amplitude_value * fr.size * 4.0 * w * (1.0 - w)
    offset = np.zeros((len(t), 3))
    offset[:, 2] = z
    if p.direction in DIRECTIONS:
        offset += DIRECTIONS[p.direction] * (0.6 * fr.size) * (k + w)[:, None]
    return _translate(len(mesh.vertices), offset)


def bounce(mesh, p, t):
    """Ball-like bounces |sin| with a squash when touching the ground (volume kept)."""
    fr = _frame(mesh)
    n = p.speed_value
    height = np.abs(np.sin(np.pi * n * t))
    squash = 0.3 * min(p.amplitude_value / 0.3, 1.5) * (1.0 - height) ** 6 * smoother(t * n * 2)
    sz = 1.0 - squash
    sxy = 1.0 / np.sqrt(sz)
    disp = _scale_about(mesh.vertices, fr.base, sxy, sxy, sz)
    disp[..., 2] += (p.amplitude_value * fr.size * height)[:, None]
    return disp


def spin(mesh, p, t):
    fr = _frame(mesh)
    sign = -1.0 if p.direction == "clockwise" else 1.0
    angle = sign * p.speed_value * travel(t)
    return _rigid(mesh.vertices, geo.rotation(UP, angle), fr.centre)


def sway(mesh, p, t):
    fr = _frame(mesh)
    axis = [0, 1, 0] if p.direction == "side to side" else [1, 0, 0]
    angle = p.amplitude_value * np.sin(2 * np.pi * p.speed_value * t)
    return _rigid(mesh.vertices, geo.rotation(axis, angle), fr.base)


def shake(mesh, p, t):
    fr = _frame(mesh)
    c = p.speed_value
    wave = (np.sin(2 * np.pi * c * t) + 0.35 * np.sin(2 * np.pi * 1.6 * c * t)) / 1.35
    axis = np.array([1.0, 0.0, 0.0]) if p.direction == "side to side" else UP
    return _translate(len(mesh.vertices), axis * (p.amplitude_value * fr.size * wave)[:, None])


def squash_stretch(mesh, p, t):
    fr = _frame(mesh)
    sz = 1.0 - p.amplitude_value * np.sin(2 * np.pi * p.speed_value * t)
    sxy = 1.0 / np.sqrt(sz)
    return _scale_about(mesh.vertices, fr.base, sxy, sxy, sz)


def twist(mesh, p, t):
    """Rotation about the vertical axis growing from 0 at the base to the full angle at the top."""
    fr = _frame(mesh)
    v = mesh.vertices
    sign = -1.0 if p.direction == "clockwise" else 1.0
    zn = (v[:, 2] - fr.lo[2]) / fr.height
    angle = sign * p.amplitude_value * np.sin(2 * np.pi * p.speed_value * t)[:, None] * zn[None]
    rel = v[:, :2] - fr.centre[:2]
    c, s = np.cos(angle), np.sin(angle)
    disp = np.zeros((len(t), len(v), 3))
    disp[..., 0] = (c - 1.0) * rel[:, 0] - s * rel[:, 1]
    disp[..., 1] = s * rel[:, 0] + (c - 1.0) * rel[:, 1]
    return disp


def bend(mesh, p, t):
    """Bend the mesh over its base toward a direction: the vertical axis becomes a circular arc
    of total angle phi (length kept along the axis)."""
    fr = _frame(mesh)
    v = mesh.vertices
    d = DIRECTIONS[p.direction]
    # the arc's radius (height / phi) must stay wider than the mesh, or its inner side folds
    half_width = 0.5 * float(np.abs(fr.hi - fr.lo) @ np.abs(d))
    phi_max = fr.height / (1.2 * max(half_width, 1e-12))
    phi = min(p.amplitude_value, phi_max) * np.sin(0.5 * np.pi * p.speed_value * t) ** 2
    u = (v - fr.centre) @ d                  # offset toward the bend
    h = v[:, 2] - fr.lo[2]                   # height above the base
    theta = phi[:, None] * h[None] / fr.height
    half = np.sinc(theta / (2 * np.pi))      # sin(theta/2) / (theta/2), safe at 0
    f1 = 0.5 * theta * half * half           # (1 - cos theta) / theta
    du = h * f1 - u * (1.0 - np.cos(theta))
    dh = h * (np.sinc(theta / np.pi) - 1.0) - u * np.sin(theta)
    return du[..., None] * d + dh[..., None] * UP


def pulse(mesh, p, t):
    fr = _frame(mesh)
    s = 1.0 + p.amplitude_value * np.sin(np.pi * p.speed_value * t) ** 2
    return _scale_about(mesh.vertices, fr.centre, s, s, s)


def wobble(mesh, p, t):
    """Jelly wobble: a shear growing with height squared, oscillating and dying down."""
    fr = _frame(mesh)
    v = mesh.vertices
    zn = (v[:, 2] - fr.lo[2]) / fr.height
    axis = np.array([1.0, 0.0, 0.0]) if p.direction == "side to side" else np.array([0.0, 1.0, 0.0])
    wave = np.sin(2 * np.pi * p.speed_value * t) * np.exp(-1.2 * t)
    shift = p.amplitude_value * fr.size * wave[:, None] * (zn ** 2)[None]
    drop = -0.25 * np.abs(shift) * zn[None]  # the top dips as it leans, like a real jelly
    return shift[..., None] * axis + drop[..., None] * UP


def float_up(mesh, p, t):
    fr = _frame(mesh)
    rise = p.amplitude_value * fr.size * smoother(t / p.speed_value)
    drift = 0.03 * fr.size * np.sin(2 * np.pi * t) * envelope(t, 0.3)
    offset = np.stack([drift, np.zeros_like(t), rise], axis=1)
    return _translate(len(mesh.vertices), offset)


def sink(mesh, p, t):
    fr = _frame(mesh)
    depth = p.amplitude_value * max(fr.height, 0.3 * fr.size) * smoother(t / p.speed_value)
    offset = np.zeros((len(t), 3))
    offset[:, 2] = -depth
    return _translate(len(mesh.vertices), offset)


def grow(mesh, p, t):
    fr = _frame(mesh)
    s = 1.0 + (p.amplitude_value - 1.0) * smoother(t / p.speed_value)
    return _scale_about(mesh.vertices, fr.base, s, s, s)


shrink = grow  # same scaling about the base; the amplitude (< 1) makes it shrink


def fall_over(mesh, p, t):
    """Tip over the bottom edge on the fall side, accelerating like a falling body (u^2)."""
    fr = _frame(mesh)
    d = DIRECTIONS[p.direction]
    half = 0.5 * float(np.abs(fr.hi - fr.lo) @ np.abs(d))
    pivot = fr.base + d * half
    u = np.clip(t / p.speed_value, 0.0, 1.0)
    angle = p.amplitude_value * u * u
    return _rigid(mesh.vertices, geo.rotation(np.cross(UP, d), angle), pivot)


def melt(mesh, p, t):
    """The top slumps toward the ground while the lower part spreads outward."""
    fr = _frame(mesh)
    v = mesh.vertices
    m = p.amplitude_value * smoother(t / p.speed_value)[:, None]
    h = v[:, 2] - fr.lo[2]
    zn = h / fr.height
    dz = -h[None] * m * (0.2 + 0.7 * zn[None])
    spread = m * 0.9 * (1.0 - zn[None]) ** 2
    rel = v[:, :2] - fr.centre[:2]
    disp = np.zeros((len(t), len(v), 3))
    disp[..., :2] = spread[..., None] * rel[None]
    disp[..., 2] = dz
    return disp


def roll(mesh, p, t):
    """Roll along the ground: rotation about a horizontal axis through the centre plus the
    matching travel (rolling radius = half the height)."""
    fr = _frame(mesh)
    d = DIRECTIONS[p.direction]
    angle = p.speed_value * travel(t)
    offset = d * (angle * 0.5 * fr.height)[:, None]
    return _rigid(mesh.vertices, geo.rotation(np.cross(UP, d), angle), fr.centre, offset)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_NONE = ("none",)
_SPEED3 = {"slow": 1.0, "normal": 2.0, "fast": 3.0}
_DIR4 = ("forward", "backward", "left", "right")


def _fam(name, fn, *, speeds, amplitudes, directions=_NONE, requires=(), articulated=False,
         rigid=False, moves=(), min_aspect=0.0):
    return Family(name, articulated, tuple(frozenset(r) for r in requires), rigid, dict(speeds),
                  dict(amplitudes), tuple(directions), tuple(moves), fn, min_aspect)


FAMILY_SPECS: dict[str, Family] = {f.name: f for f in [
    # articulated (speed = cycles over the clip unless noted; amplitude = angle in radians)
    _fam("flap_wings", flap_wings, speeds={"slow": 1.0, "normal": 2.0, "fast": 3.0},
         amplitudes={"small": 18 * DEG, "normal": 32 * DEG, "large": 48 * DEG},
         requires=[{"wings"}], articulated=True, moves=("wing_l", "wing_r")),
    _fam("wag_tail", wag_tail, speeds={"slow": 1.5, "normal": 2.5, "fast": 4.0},
         amplitudes={"small": 18 * DEG, "normal": 35 * DEG, "large": 55 * DEG},
         requires=[{"tail"}], articulated=True, moves=("tail",)),
    _fam("walk", walk, speeds={"slow": 1.0, "normal": 1.5, "fast": 2.5},
         amplitudes={"small": 14 * DEG, "normal": 24 * DEG, "large": 34 * DEG},
         directions=("forward", "backward", "in place"), requires=[{"legs4"}, {"legs2"}],
         articulated=True, moves=("leg_fl", "leg_fr", "leg_bl", "leg_br", "leg_l", "leg_r")),
    _fam("wave_arm", wave_arm, speeds={"slow": 1.5, "normal": 2.5, "fast": 3.5},
         amplitudes={"small": 15 * DEG, "normal": 25 * DEG, "large": 40 * DEG},
         directions=("left", "right"), requires=[{"arms"}], articulated=True,
         moves=("arm_l", "arm_r")),
    _fam("raise_arms", raise_arms, speeds={"normal": 1.0, "fast": 2.0},
         amplitudes={"small": 80 * DEG, "normal": 120 * DEG, "large": 165 * DEG},
         requires=[{"arms"}], articulated=True, moves=("arm_l", "arm_r")),
    _fam("nod_head", nod_head, speeds=_SPEED3,
         amplitudes={"small": 12 * DEG, "normal": 22 * DEG, "large": 35 * DEG},
         requires=[{"head"}], articulated=True, moves=("head",)),
    _fam("shake_head", shake_head, speeds={"slow": 1.0, "normal": 2.0, "fast": 3.5},
         amplitudes={"small": 15 * DEG, "normal": 30 * DEG, "large": 45 * DEG},
         requires=[{"head"}], articulated=True, moves=("head",)),
    _fam("swim", swim, speeds={"slow": 1.0, "normal": 1.5, "fast": 2.5},
         amplitudes={"small": 8 * DEG, "normal": 14 * DEG, "large": 21 * DEG},
         directions=("forward", "in place"), requires=[{"fish"}], articulated=True,
         moves=("head", "body", "tail", "fins")),
    _fam("slither", slither, speeds={"slow": 0.5, "normal": 1.0, "fast": 1.5},
         amplitudes={"small": 18 * DEG, "normal": 28 * DEG, "large": 38 * DEG},
         directions=("forward", "in place"), requires=[{"snake"}], articulated=True,
         moves=("head", "body", "tail")),
    # rear_up speed: 0.5 = rears up and stays, 1 = up and down, 2 = twice
    _fam("rear_up", rear_up, speeds={"slow": 0.5, "normal": 1.0, "fast": 2.0},
         amplitudes={"small": 20 * DEG, "normal": 33 * DEG, "large": 48 * DEG},
         requires=[{"legs4"}], articulated=True),
    # whole body; amplitudes of translations are fractions of the mesh size
    _fam("jump", jump, speeds={"normal": 1, "fast": 2},
         amplitudes={"small": 0.25, "normal": 0.5, "large": 0.9},
         directions=("up",) + _DIR4, rigid=True),
    _fam("bounce", bounce, speeds={"slow": 2.0, "normal": 3.0, "fast": 4.0},
         amplitudes={"small": 0.15, "normal": 0.3, "large": 0.5}),
    # spin speed: total angle turned over the clip
    _fam("spin", spin, speeds={"slow": np.pi, "normal": 2 * np.pi, "fast": 4 * np.pi},
         amplitudes={"normal": 1.0}, directions=("clockwise", "counterclockwise"), rigid=True),
    _fam("sway", sway, speeds={"slow": 1.0, "normal": 1.5, "fast": 2.5},
         amplitudes={"small": 6 * DEG, "normal": 12 * DEG, "large": 20 * DEG},
         directions=("side to side", "back and forth"), rigid=True),
    _fam("shake", shake, speeds={"normal": 3.0, "fast": 4.5},
         amplitudes={"small": 0.03, "normal": 0.06, "large": 0.1},
         directions=("side to side", "up and down"), rigid=True),
    _fam("squash_stretch", squash_stretch, speeds=_SPEED3,
         amplitudes={"small": 0.12, "normal": 0.25, "large": 0.4}),
    # twist speed 0.5: twists and untwists once
    _fam("twist", twist, speeds={"slow": 0.5, "normal": 1.0, "fast": 2.0},
         amplitudes={"small": 25 * DEG, "normal": 50 * DEG, "large": 90 * DEG},
         directions=("clockwise", "counterclockwise"), min_aspect=0.5),
    # bend speed: 1 = bends and holds, 2 = bends and straightens, 4 = twice
    _fam("bend", bend, speeds={"slow": 1.0, "normal": 2.0, "fast": 4.0},
         amplitudes={"small": 30 * DEG, "normal": 60 * DEG, "large": 90 * DEG}, directions=_DIR4,
         min_aspect=0.5),
    _fam("pulse", pulse, speeds=_SPEED3, amplitudes={"small": 0.06, "normal": 0.12, "large": 0.22}),
    _fam("wobble", wobble, speeds={"slow": 1.5, "normal": 2.5, "fast": 3.5},
         amplitudes={"small": 0.05, "normal": 0.1, "large": 0.18},
         directions=("side to side", "back and forth"), min_aspect=0.35),
    # float_up / sink / grow / shrink / fall_over / melt speed: fraction of the clip the change takes
    _fam("float_up", float_up, speeds={"slow": 1.0, "normal": 0.75, "fast": 0.45},
         amplitudes={"small": 0.3, "normal": 0.6, "large": 1.0}, rigid=True),
    _fam("sink", sink, speeds={"slow": 1.0, "normal": 0.75, "fast": 0.45},
         amplitudes={"small": 0.3, "normal": 0.6, "large": 1.0}, rigid=True),
    _fam("grow", grow, speeds={"slow": 1.0, "normal": 0.75, "fast": 0.45},
         amplitudes={"small": 1.25, "normal": 1.6, "large": 2.0}),
    _fam("shrink", shrink, speeds={"slow": 1.0, "normal": 0.75, "fast": 0.45},
         amplitudes={"small": 0.8, "normal": 0.55, "large": 0.3}),
    _fam("fall_over", fall_over, speeds={"slow": 1.0, "normal": 0.75, "fast": 0.5},
         amplitudes={"small": 45 * DEG, "normal": 90 * DEG}, directions=_DIR4, rigid=True),
    _fam("melt", melt, speeds={"slow": 1.0, "normal": 0.8, "fast": 0.55},
         amplitudes={"small": 0.35, "normal": 0.65, "large": 0.9}, min_aspect=0.35),
    _fam("roll", roll, speeds={"slow": np.pi, "normal": 1.5 * np.pi, "fast": 2 * np.pi},
         amplitudes={"normal": 1.0}, directions=_DIR4, rigid=True),
]}

# Jitter ranges: categories stay apart (neighbouring speed values differ by >= 1.3x)
SPEED_JITTER = 0.08
AMPLITUDE_JITTER = 0.12
# families whose speed value is a duration or an integer count, not a rate
_DURATION_SPEEDS = {"float_up", "sink", "grow", "shrink", "fall_over", "melt"}
_INTEGER_SPEEDS = {"jump"}


def sample_params(family: Family, rng: np.random.Generator) -> MotionParams:
    """Draw categories uniformly, then jitter their numbers a little."""
    speed = str(rng.choice(list(family.speeds)))
    amplitude = str(rng.choice(list(family.amplitudes)))
    direction = str(rng.choice(list(family.directions)))
    s = float(family.speeds[speed])
    if family.name not in _INTEGER_SPEEDS:
        s *= 1.0 + rng.uniform(-SPEED_JITTER, SPEED_JITTER)
        if family.name in _DURATION_SPEEDS:
            s = min(s, 1.0)
    a = float(family.amplitudes[amplitude])
    if family.name in ("grow", "shrink"):  # jitter the change, not the scale itself
        a = 1.0 + (a - 1.0) * (1.0 + rng.uniform(-AMPLITUDE_JITTER, AMPLITUDE_JITTER))
    else:
        a *= 1.0 + rng.uniform(-AMPLITUDE_JITTER, AMPLITUDE_JITTER)
    return MotionParams(speed, amplitude, direction, s, a)


def animate(mesh: ProcMesh, family: Family, params: MotionParams, T: int = 16) -> np.ndarray:
    """Frames (T, N, 3) float64 of `family` on `mesh`: rest + displacement, frame 0 = rest."""
    if not family.suits(mesh):
        raise ValueError(f"family {family.name} needs {[sorted(r) for r in family.requires]} and "
                         f"height/width >= {family.min_aspect}; mesh {mesh.shape} has "
                         f"{sorted(mesh.capabilities)} and {aspect(mesh):.2f}")
    t = np.linspace(0.0, 1.0, T)
    disp = family.fn(mesh, params, t)
    return mesh.vertices[None] + disp

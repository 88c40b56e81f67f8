"""The procedural training set: varied meshes x motion families x paraphrased captions, from a seed.

Everything is numpy and deterministic: sample i of (seed, split) depends only on those three
numbers (not on how many samples are generated or in what order), so a data loader can build
samples on the fly by index (`sample_at`) and `generate(count, seed)` returns byte-identical arrays
on every run.

Meshes (conventions in `creatures`: +Z up, ground z = 0, creatures face -Y, left = +X)
  primitive         UV sphere/ellipsoid, ico sphere, subdivided (rounded) box, cylinder, cone,
                    torus (flat or upright), capsule, standing sheet, at several resolutions
  composite         named assemblies (snowman, tree, mushroom, tower) and random unions of 2-4
                    transformed primitives
  quadruped, winged_quadruped, bird, humanoid, snake, fish
                    creatures on random skeletons with random proportions (see `creatures`)
  Each mesh comes from its own id; the detail level is lowered until the mesh fits max_vertices
  (~300-2500 vertices by default). A mesh still over budget is simplified by
  `apply_vertex_budget` and the note is kept in the sample's meta.

Held-out splits (documented in dataset.json too)
  meshes     mesh ids with id % 10 == 0 are evaluation meshes, all others training meshes; the
             generator draws ids from its split only, so no evaluation mesh is ever trained on.
  captions   templates 6-7 of every family are evaluation only (`captions.EVAL_TEMPLATES`); all
             others (0-5 and the extra ones from 8 on) are training paraphrases.

Families are balanced: every block of len(families) consecutive samples holds each family once
(in a seeded order); a family is paired only with mesh kinds that have the parts it drives.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from backend.data import creatures
from backend.data import geometry as geo
from backend.data.captions import EVAL_TEMPLATES, captions_for, train_templates
from backend.data.creatures import ProcMesh
from backend.data.errors import DatasetError
from backend.data.motions import FAMILY_SPECS, animate, sample_params
from backend.data.sample import MotionSample, apply_vertex_budget
from backend.data.shards import write_shard

GENERATOR_VERSION = 3  # 2, 3: more training paraphrases (motions unchanged)
FAMILIES: list[str] = list(FAMILY_SPECS)
SPLITS = ("train", "eval")
EVAL_MESH_MODULUS = 10
DEFAULT_MAX_VERTICES = 2500
DEFAULT_T = 16

KIND_CAPABILITIES: dict[str, frozenset] = {
    "primitive": frozenset(),
    "composite": frozenset(),
    "quadruped": frozenset({"legs4", "tail", "head", "quadruped"}),
    "winged_quadruped": frozenset({"legs4", "tail", "head", "quadruped", "wings"}),
    "bird": frozenset({"wings", "legs2", "tail", "head", "bird"}),
    "humanoid": frozenset({"arms", "legs2", "head", "humanoid"}),
    "snake": frozenset({"snake"}),
    "fish": frozenset({"fish"}),
}
KINDS = list(KIND_CAPABILITIES)
# how often each kind carries a whole-body motion (articulated ones pick among capable kinds)
_WHOLE_BODY_WEIGHTS = {"primitive": 0.28, "composite": 0.2, "quadruped": 0.1,
                       "winged_quadruped": 0.05, "bird": 0.09, "humanoid": 0.14, "snake": 0.06,
                       "fish": 0.08}
_SPLIT_CODE = {"train": 1, "eval": 2}
_MESH_SALT = 0x6D657368  # "mesh": keeps mesh streams apart from sample streams
_MAX_MESH_DRAWS = 64


def is_eval_mesh(mesh_id: int) -> bool:
    """The held-out mesh rule: ids divisible by 10 belong to the evaluation split."""
    return int(mesh_id) % EVAL_MESH_MODULUS == 0


def draw_mesh_id(rng: np.random.Generator, split: str) -> int:
    q = int(rng.integers(0, 100_000_000))
    if split == "eval":
        return q * EVAL_MESH_MODULUS
    return q * EVAL_MESH_MODULUS + int(rng.integers(1, EVAL_MESH_MODULUS))


# ---------------------------------------------------------------------------------------------
# Primitive and composite meshes
# ---------------------------------------------------------------------------------------------

_PRIMITIVE_NOUNS = {
    "uv_sphere": ("sphere", "ball", "orb"), "ellipsoid": ("ellipsoid", "egg", "blob"),
    "ico_sphere": ("sphere", "ball", "orb"), "box": ("cube", "box", "block"),
    "rounded_box": ("rounded box", "soft cube", "block"), "cylinder": ("cylinder", "pillar", "can"),
    "cone": ("cone", "spike"), "torus": ("torus", "donut", "ring"), "wheel": ("wheel", "ring"),
    "capsule": ("capsule", "pill"), "sheet": ("sheet", "panel", "flag", "card"),
}
_COMPOSITE_NOUNS = {
    "snowman": ("snowman",), "tree": ("tree", "pine tree"), "mushroom": ("mushroom",),
    "tower": ("tower", "stack of blocks"), "random": ("object", "shape", "sculpture", "toy", "thing"),
}


def _n(res: float, lo: int, hi: int) -> int:
    return int(round(lo + (hi - lo) * res))


def _primitive(rng: np.random.Generator, shape: str, res: float):
    """(vertices, faces) of one primitive at resolution `res` in [0, 1], random proportions."""
    if shape in ("uv_sphere", "ellipsoid"):
        seg = _n(res, 16, 48)
        v, f = geo.uv_sphere(seg, max(8, seg // 2))
        if shape == "ellipsoid":
            v = v * rng.uniform(0.5, 1.5, size=3)
        return v, f
    if shape == "ico_sphere":
        return geo.ico_sphere(2 if res < 0.25 else 3)
    if shape in ("box", "rounded_box"):
        n = _n(res, 7, 19)
        v, f = geo.subdivided_cube(n, 2.0, rng.uniform(0.2, 0.45) if shape == "rounded_box" else 0.0)
        return v * rng.uniform(0.5, 1.5, size=3), f
    if shape == "cylinder":
        seg = _n(res, 16, 48)
        return geo.cylinder(seg, _n(res, 6, 24), rng.uniform(0.3, 0.8), rng.uniform(0.8, 2.5))
    if shape == "cone":
        seg = _n(res, 16, 48)
        return geo.cone(seg, _n(res, 8, 30), rng.uniform(0.4, 1.0), rng.uniform(0.8, 2.5))
    if shape in ("torus", "wheel"):
        v, f = geo.torus(_n(res, 24, 64), _n(res, 12, 28), 1.0, rng.uniform(0.15, 0.45))
        if shape == "wheel":
            v = v @ geo.rotation([1, 0, 0], np.pi / 2).T
        return v, f
    if shape == "capsule":
        seg = _n(res, 16, 40)
        return geo.capsule(seg, _n(res, 5, 14), rng.uniform(0.5, 2.0), rng.uniform(0.3, 0.6))
    if shape == "sheet":
        nx, nz = _n(res, 14, 44), _n(res, 14, 44)
        v, f = geo.plane(nx, nz, rng.uniform(0.8, 2.0), rng.uniform(0.8, 2.0))
        return v @ geo.rotation([1, 0, 0], np.pi / 2).T, f  # stand it up in the XZ plane
    raise ValueError(shape)


def _ground(v: np.ndarray) -> np.ndarray:
    """Centre in XY and put the lowest point on z = 0."""
    lo, hi = v.min(axis=0), v.max(axis=0)
    return v - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])


def _union(parts):
    verts, faces, count = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + count)
        count += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _composite(rng: np.random.Generator, shape: str, res: float):
    low = 0.35 * res  # components are coarser so the whole stays within budget
    if shape == "snowman":
        radii = np.sort(rng.uniform(0.25, 0.6, size=3))[::-1]
        parts, z = [], 0.0
        for r in radii:
            v, f = geo.uv_sphere(_n(low, 14, 28), _n(low, 8, 14), r)
            parts.append((v + [0, 0, z + r], f))
            z += 1.7 * r
        return _union(parts)
    if shape == "tree":
        h = rng.uniform(0.4, 1.0)
        trunk = geo.cylinder(_n(low, 10, 20), 4, rng.uniform(0.08, 0.18), h)
        crowns = []
        for k in range(int(rng.integers(1, 4))):
            cv, cf = geo.cone(_n(low, 14, 28), 6, rng.uniform(0.4, 0.7) * (1 - 0.2 * k), rng.uniform(0.6, 1.0))
            crowns.append((cv + [0, 0, h * 0.8 + 0.45 * k], cf))
        return _union([trunk] + crowns)
    if shape == "mushroom":
        h = rng.uniform(0.4, 1.0)
        stem = geo.cylinder(_n(low, 12, 24), 6, rng.uniform(0.1, 0.25), h)
        cap_r = rng.uniform(0.4, 0.8)
        theta = np.linspace(0, np.pi / 2, _n(low, 6, 12))
        cv, cf = geo.lathe(np.r_[0.0, cap_r * 0.5, cap_r * np.cos(theta[:-1]), 0.0],
                           np.r_[0.0, 0.0, cap_r * 0.7 * np.sin(theta[:-1]), cap_r * 0.7],
                           _n(low, 16, 32))
        return _union([stem, (cv + [0, 0, h * 0.95], cf)])
    if shape == "tower":
        parts, z = [], 0.0
        for _ in range(int(rng.integers(2, 5))):
            if rng.random() < 0.5:
                v, f = geo.subdivided_cube(_n(low, 4, 9), 1.0)
                s = rng.uniform(0.4, 0.9, size=3)
                v = (v + [0, 0, 0.5]) * s @ geo.rotation([0, 0, 1], rng.uniform(0, np.pi)).T
                height = s[2]
            else:
                height = rng.uniform(0.3, 0.8)
                v, f = geo.cylinder(_n(low, 14, 28), 4, rng.uniform(0.2, 0.45), height)
            parts.append((v + [0, 0, z], f))
            z += height
        return _union(parts)
    # random union of 2-4 transformed primitives around the origin
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        kind = str(rng.choice(["uv_sphere", "box", "cylinder", "cone", "torus", "capsule"]))
        v, f = _primitive(rng, kind, low)
        v = v - v.mean(axis=0)
        v = v * (rng.uniform(0.25, 0.6) / np.abs(v).max())
        v = v @ geo.random_rotation(rng).T + rng.uniform(-0.45, 0.45, size=3)
        parts.append((v, f))
    return _union(parts)


# ---------------------------------------------------------------------------------------------
# Mesh factory
# ---------------------------------------------------------------------------------------------

_CREATURE_SEGMENTS = [8, 10, 12, 14, 16]


def build_mesh(kind: str, mesh_id: int, max_vertices: int = DEFAULT_MAX_VERTICES) -> ProcMesh:
    """The mesh of `kind` with identity `mesh_id` (deterministic), fitted under max_vertices by
    lowering its detail level; the shape and proportions do not depend on the budget except that
    the lowest level may still exceed it (the caller then simplifies and notes it)."""
    if kind not in KIND_CAPABILITIES:
        raise DatasetError(f"unknown mesh kind {kind!r}; choose one of {KINDS}.")
    pick = np.random.default_rng([_MESH_SALT, KINDS.index(kind), int(mesh_id), 0])
    if kind in ("primitive", "composite"):
        names = list(_PRIMITIVE_NOUNS if kind == "primitive" else _COMPOSITE_NOUNS)
        if kind == "composite":  # random unions are as common as all named assemblies together
            names = names + ["random"] * 3
        shape = str(pick.choice(names))
        res = float(pick.uniform(0.0, 1.0))
        while True:
            rng = np.random.default_rng([_MESH_SALT, KINDS.index(kind), int(mesh_id), 1])
            builder = _primitive if kind == "primitive" else _composite
            v, f = builder(rng, shape, res)
            if len(v) <= max_vertices or res <= 0.0:
                break
            res = max(0.0, res - 0.2)
        nouns = (_PRIMITIVE_NOUNS if kind == "primitive" else _COMPOSITE_NOUNS)[shape]
        return ProcMesh(kind=kind, shape=shape, nouns=nouns, vertices=_ground(v),
                        faces=f.astype(np.int64), capabilities=KIND_CAPABILITIES[kind],
                        info={"resolution": round(res, 4)})
    level = int(pick.integers(0, len(_CREATURE_SEGMENTS)))
    while True:
        rng = np.random.default_rng([_MESH_SALT, KINDS.index(kind), int(mesh_id), 1])
        seg = _CREATURE_SEGMENTS[level]
        if kind in ("quadruped", "winged_quadruped"):
            mesh = creatures.quadruped(rng, seg, winged=kind == "winged_quadruped")
        else:
            mesh = getattr(creatures, kind)(rng, seg)
        if len(mesh.vertices) <= max_vertices or level == 0:
            break
        level -= 1
    mesh.kind = kind
    mesh.info["segments"] = seg
    return mesh


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


def _check_args(split: str, families: Sequence[str] | None, seed: int = 0,
                index: int = 0) -> list[str]:
    for name, value in (("seed", seed), ("index", index)):
        if int(value) != value or value < 0:
            raise DatasetError(f"{name}={value!r} must be a non-negative integer.")
    if split not in SPLITS:
        raise DatasetError(f"split={split!r}; use 'train' or 'eval'.")
    fams = list(FAMILIES if families is None else families)
    unknown = [f for f in fams if f not in FAMILY_SPECS]
    if unknown or not fams:
        raise DatasetError(f"unknown motion families {unknown or '(none given)'}; choose from {FAMILIES}.")
    return fams


def family_at(index: int, seed: int, families: Sequence[str], split: str = "train") -> str:
    """The family of sample `index`: each block of len(families) samples has every family once."""
    block, pos = divmod(int(index), len(families))
    order = np.random.default_rng([int(seed), _SPLIT_CODE[split], block, 7]).permutation(len(families))
    return families[int(order[pos])]


def compatible_kinds(family: str) -> list[str]:
    spec = FAMILY_SPECS[family]
    return [k for k in KINDS if spec.applies_to(KIND_CAPABILITIES[k])]


def sample_at(index: int, seed: int, split: str = "train", families: Sequence[str] | None = None,
              max_vertices: int = DEFAULT_MAX_VERTICES, T: int = DEFAULT_T) -> MotionSample:
    """Sample `index` of the (seed, split) stream; independent of every other index.

    The family comes from the balanced block order; the mesh kind is drawn among the kinds that
    have the family's parts; mesh ids are drawn from the split's ids until a mesh suits the
    family (height-driven deformations skip flat meshes); then parameters, noun and captions.
    """
    fams = _check_args(split, families, seed, index)
    family = family_at(index, seed, fams, split)
    spec = FAMILY_SPECS[family]
    rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])
    kinds = compatible_kinds(family)
    if spec.articulated:
        w = np.ones(len(kinds))
    else:
        w = np.array([_WHOLE_BODY_WEIGHTS[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
    for _ in range(_MAX_MESH_DRAWS):
        mesh_id = draw_mesh_id(rng, split)
        mesh = build_mesh(kind, mesh_id, max_vertices)
        if spec.suits(mesh):
            break
        # too flat for this family: try another mesh (of a kind drawn again, some are never tall)
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
    else:
        raise RuntimeError(f"no mesh suits {family} after {_MAX_MESH_DRAWS} draws")
    params = sample_params(spec, rng)
    frames = animate(mesh, spec, params, T).astype(np.float32)
    noun = str(mesh.nouns[int(rng.integers(len(mesh.nouns)))])
    captions = captions_for(family, noun, params.as_meta(), split, rng)
    meta = {
        "generator_version": GENERATOR_VERSION, "split": split, "index": int(index),
        "mesh_kind": kind, "mesh_shape": mesh.shape, "mesh_id": int(mesh_id), "noun": noun,
        "params": params.as_meta(), "articulated": spec.articulated, "rigid": spec.rigid,
        "parts": mesh.part_ranges(),
    }
    sample = MotionSample(frames=frames, faces=mesh.faces, captions=captions,
                          source=f"procedural:v{GENERATOR_VERSION}:seed={seed}:split={split}:i={index}",
                          family=family, meta=meta)
    if sample.num_vertices > max_vertices:
        sample, _ = apply_vertex_budget(sample, max_vertices)  # the note lands in meta
    return sample


def iter_samples(count: int, seed: int, split: str = "train", families: Sequence[str] | None = None,
                 max_vertices: int = DEFAULT_MAX_VERTICES, T: int = DEFAULT_T,
                 start: int = 0) -> Iterator[MotionSample]:
    fams = _check_args(split, families, seed, start)
    for i in range(start, start + int(count)):
        yield sample_at(i, seed, split, fams, max_vertices, T)


def generate(count: int, seed: int, split: str = "train", families: Sequence[str] | None = None,
             max_vertices: int = DEFAULT_MAX_VERTICES, T: int = DEFAULT_T) -> list[MotionSample]:
    """`count` samples of the (seed, split) stream, `sample.family` set, deterministic."""
    if int(count) != count or count < 0:
        raise DatasetError(f"count={count} must be a non-negative integer.")
    return list(iter_samples(count, seed, split, families, max_vertices, T))


def _write_shard_range(out: Path, seed: int, split: str, fams: Sequence[str], max_vertices: int, T: int,
                       compress: bool, job: tuple[str, int, int]):
    """Generate the samples of one shard, job = (name, start, count); returns what the manifest
    counts. A top-level function so that worker processes can run it."""
    name, start, count = job
    batch = list(iter_samples(count, seed, split, fams, max_vertices, T, start=start))
    write_shard(out / name, batch, compress=compress)
    notes = [s.meta["vertex_budget_note"] for s in batch if "vertex_budget_note" in s.meta]
    return (Counter(s.family for s in batch), Counter(s.meta["mesh_kind"] for s in batch), notes)


def write_dataset(out_dir, count: int, seed: int, split: str = "train", shard_size: int = 256,
                  families: Sequence[str] | None = None, max_vertices: int = DEFAULT_MAX_VERTICES,
                  T: int = DEFAULT_T, overwrite: bool = False, progress=None,
                  compress: bool = False, workers: int = 1) -> dict:
    """Write `count` samples as shards `shard-00000.npz`... plus `dataset.json`; returns the
    manifest. `progress(done, count)` is called after every shard if given. Uncompressed shards
    take about 0.3 MB per sample at the default budget; compress=True trades write time for size.
    `workers` > 1 builds shards in that many processes; every sample depends on its index alone,
    so the files are the same whatever the number of workers."""
    fams = _check_args(split, families)
    if int(shard_size) != shard_size or shard_size < 1:
        raise DatasetError(f"shard_size={shard_size} must be a positive integer.")
    if int(workers) != workers or workers < 1:
        raise DatasetError(f"workers={workers} must be a positive integer.")
    out = Path(out_dir)
    manifest_path = out / "dataset.json"
    if manifest_path.exists() and not overwrite:
        raise DatasetError(f"{out} already holds a dataset (dataset.json). Fix: choose an empty "
                           "folder or pass overwrite=True.")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.npz"):
        if overwrite:
            old.unlink()
        else:
            raise DatasetError(f"{out} already holds shards ({old.name}). Fix: choose an empty folder.")
    jobs = [(f"shard-{k:05d}.npz", start, min(shard_size, count - start))
            for k, start in enumerate(range(0, int(count), int(shard_size)))]
    work = functools.partial(_write_shard_range, out, seed, split, fams, max_vertices, T, compress)
    pool = None
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork: workers inherit the imported generator instead of importing it again
        pool = ProcessPoolExecutor(max_workers=int(workers), mp_context=multiprocessing.get_context("fork"))
    fam_counts, kind_counts, notes, done = Counter(), Counter(), [], 0
    try:
        results = map(work, jobs) if pool is None else pool.map(work, jobs)
        for (_, _, n), (fam, kind, shard_notes) in zip(jobs, results):  # in shard order
            fam_counts.update(fam)
            kind_counts.update(kind)
            notes.extend(shard_notes)
            done += n
            if progress is not None:
                progress(done, count)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    shards = [name for name, _, _ in jobs]
    manifest = {
        "generator": "backend.data.procedural", "generator_version": GENERATOR_VERSION,
        "seed": int(seed), "split": split, "count": int(count), "T": int(T),
        "max_vertices": int(max_vertices), "families": fams,
        "family_counts": dict(sorted(fam_counts.items())),
        "mesh_kind_counts": dict(sorted(kind_counts.items())),
        "shards": shards, "shard_size": int(shard_size), "compressed": bool(compress),
        "held_out": {
            "meshes": f"mesh_id % {EVAL_MESH_MODULUS} == 0 is evaluation only",
            "caption_templates_train": {f: train_templates(f) for f in fams},
            "caption_templates_eval": list(EVAL_TEMPLATES),
        },
        "conventions": "+Z up, ground z=0, creatures face -Y, left=+X, clockwise seen from above",
        "vertex_budget_notes": notes,
    }
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, manifest_path)
    return manifest

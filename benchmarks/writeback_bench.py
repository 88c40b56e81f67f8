"""Time the write-back in real Blender: shape keys and PC2 point cache, several mesh sizes.

    .venv/bin/python benchmarks/writeback_bench.py [--vertices 10000 50000 200000]
                                                   [--frames 16 64 256] [--repeat 2]

Each cell is the best of --repeat runs of one public call (write_shape_keys /
write_point_cache) on a fresh grid mesh, the trajectories already in memory (that is where the
backend result is once the add-on has loaded it). "replace" re-animates an object that already
carries a result of the same size. Target: 50k vertices x 64 frames under 2 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def grid_object(num_vertices: int):
    """A quad grid with about num_vertices vertices, built with foreach_set (fast)."""
    import bpy

    side = int(np.ceil(np.sqrt(num_vertices)))
    nx, ny = side, int(np.ceil(num_vertices / side))
    xs, ys = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32))
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(nx * ny, np.float32)], 1)[:num_vertices]
    n = verts.shape[0]
    qx, qy = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1))
    base = (qy * nx + qx).ravel()
    quads = np.stack([base, base + 1, base + nx + 1, base + nx], 1)
    quads = quads[(quads < n).all(1)]
    mesh = bpy.data.meshes.new(f"grid{n}")
    mesh.vertices.add(n)
    mesh.vertices.foreach_set("co", verts.ravel())
    mesh.loops.add(quads.size)
    mesh.loops.foreach_set("vertex_index", quads.ravel().astype(np.int32))
    mesh.polygons.add(len(quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    mesh.update()
    obj = bpy.data.objects.new(mesh.name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj, verts


def remove_object(obj):
    import bpy

    mesh = obj.data
    bpy.data.objects.remove(obj)
    bpy.data.meshes.remove(mesh)
    for action in [a for a in bpy.data.actions if a.users == 0]:
        bpy.data.actions.remove(action)


def best_of(repeat: int, setup, run) -> float:
    best = float("inf")
    for _ in range(repeat):
        state = setup()
        start = time.perf_counter()
        run(state)
        best = min(best, time.perf_counter() - start)
        remove_object(state[0])
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vertices", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    import bpy

    from animateanymesh_addon import blender_writeback as bw

    bpy.ops.wm.read_factory_settings(use_empty=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="aam-bench-") as cache:
        for n in args.vertices:
            for t in args.frames:
                def fresh(t=t, n=n):
                    obj, verts = grid_object(n)
                    phase = np.arange(t, dtype=np.float32)[:, None, None]
                    frames = verts[None] + 0.1 * np.sin(phase * 0.3 + verts[None, :, :1])
                    return obj, frames

                def animated(t=t, n=n):
                    obj, frames = fresh()
                    bw.write_shape_keys(obj, frames)
                    return obj, frames[::-1].copy()

                sk = best_of(args.repeat, fresh, lambda s: bw.write_shape_keys(s[0], s[1]))
                sk_re = best_of(args.repeat, animated, lambda s: bw.write_shape_keys(s[0], s[1]))
                pc = best_of(args.repeat, fresh,
                             lambda s: bw.write_point_cache(s[0], s[1], cache))
                for path in Path(cache).glob("*.pc2"):
                    path.unlink()
                rows.append((n, t, sk, sk_re, pc, t * n * 12 / 2**20))
                print(f"  measured {n} vertices x {t} frames", file=sys.stderr, flush=True)

    print(f"\nBlender {bpy.app.version_string}, best of {args.repeat}; seconds per call\n")
    print("| vertices | frames | shape keys | shape keys (replace) | PC2 + Mesh Cache | data MiB |")
    print("|---------:|-------:|-----------:|---------------------:|-----------------:|---------:|")
    for n, t, sk, sk_re, pc, mib in rows:
        print(f"| {n:>8,} | {t:>6} | {sk:>10.3f} | {sk_re:>20.3f} | {pc:>16.3f} | {mib:>8.1f} |")
    target = [r for r in rows if r[0] == 50_000 and r[1] == 64]
    if target:
        worst = max(target[0][2:5])
        print(f"\n50k x 64 frames: worst {worst:.3f} s (target < 2 s): "
              f"{'OK' if worst < 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

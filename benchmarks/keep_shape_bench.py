"""Keep Shape at mesh sizes: the time and memory of the projection alone, and what it removes.

    .venv/bin/python benchmarks/keep_shape_bench.py [--sizes 5000 50000 200000] [--frames 16]
        [--threads T]

Each size runs in a fresh process (so the peak memory is its own) on a torus of N vertices
(backend.bench.torus_mesh) spinning half a turn over the frames while it shrinks 6% towards its
axis mid-turn, with per-vertex noise of a tenth of an edge: the kind of stretch a decoded spin
has. Columns: seconds of `rigidity.keep_shape(..., "on")`, peak memory of the process, edge
distortion before and after, and the share of the motion kept (peak displacement after / before).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def spinning(vertices, frames: int, rng):
    import numpy as np

    centred = vertices - vertices.mean(0)
    edge = 0.1 * np.linalg.norm(np.ptp(centred, axis=0)) / np.sqrt(len(centred))
    out = []
    for t in range(frames):
        angle = np.pi * t / (frames - 1)
        c, s = np.cos(angle), np.sin(angle)
        turned = centred @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
        squeeze = np.array([1 - 0.06 * np.sin(angle)] * 2 + [1.0])
        out.append(turned * squeeze + (edge * rng.standard_normal(centred.shape) if t else 0))
    return np.stack(out)


def measure(n: int, frames: int) -> dict:
    import numpy as np
    import torch

    from backend import mesh as meshprep
    from backend import rigidity
    from backend.bench import torus_mesh
    from backend.evaluate import edge_distortion

    vertices, quads = torus_mesh(n)
    edges = meshprep.adjacency_edges(meshprep.triangulate(quads), len(vertices))
    clip = spinning(np.asarray(vertices, np.float64), frames, np.random.default_rng(0)).astype(np.float32)
    clock = time.perf_counter()
    result = rigidity.keep_shape(torch.from_numpy(clip), torch.from_numpy(edges), "on")
    seconds = time.perf_counter() - clock
    out = result.frames.numpy()
    return {"n": len(vertices), "seconds": seconds,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "before": 100 * edge_distortion(clip, edges), "after": 100 * edge_distortion(out, edges),
            "kept": rigidity.peak_displacement(result.frames) / rigidity.peak_displacement(torch.from_numpy(clip))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000, 200000])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child's own size
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.frames)))
        return 0
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print("| N | keep shape s | peak GB | edge distortion before | after | motion kept |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        run = subprocess.run([sys.executable, __file__, "--one", str(n), "--frames", str(args.frames)],
                             env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"| {n:,} | error: {run.stderr.strip().splitlines()[-1][:120]} |", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"| {r['n']:,} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | {r['before']:.2f}% | "
              f"{r['after']:.2f}% | {r['kept']:.3f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

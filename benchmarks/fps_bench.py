"""Farthest point sampling at scale: the plain loop against the box-pruned sampler, same run.

    .venv/bin/python benchmarks/fps_bench.py [--sizes 5000 10000 50000 200000] [--ratio 8]
                                             [--threads 1] [--skip-plain-above 200000]

Positions (3 numbers per vertex, as our own models sample) of a thin uneven shell, the shape of
mesh vertices; K = N / ratio tokens (the official K = N/8). Each row: seconds of the plain loop
(backend/models/farthest_point_sampling._fps_loop, the reference) and of the pruned sampler
(backend/models/fps_spatial.py), their ratio, and whether the picks are identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.models import farthest_point_sampling as fps  # noqa: E402
from backend.models.fps_spatial import farthest_points  # noqa: E402


def shell(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, np.pi, n)
    r = 1 + 0.3 * np.sin(5 * u)
    return np.stack([r * np.cos(u) * np.sin(v), 0.5 * np.sin(u) * np.sin(v), 2 * np.cos(v)],
                    axis=1).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 50000, 200000])
    parser.add_argument("--ratio", type=int, default=8, help="K = N / ratio")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the plain loop)")
    parser.add_argument("--skip-plain-above", type=int, default=10**9,
                        help="time the plain loop only up to this N")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"| N | K | plain loop s | pruned s | speed-up | same picks |")
    print("|---:|---:|---:|---:|---:|---|")
    for n in args.sizes:
        k = n // args.ratio
        points = shell(n)
        x = fps.denormal_safe(torch.from_numpy(points))
        clock = time.perf_counter()
        pruned = farthest_points(x.numpy(), k)
        t_pruned = time.perf_counter() - clock
        if n <= args.skip_plain_above:
            clock = time.perf_counter()
            plain = fps._fps_loop(x, k, torch.full((k,), -1, dtype=torch.long)).numpy()
            t_plain = time.perf_counter() - clock
            same = "yes" if np.array_equal(plain, pruned) else "NO"
            print(f"| {n:,} | {k:,} | {t_plain:.2f} | {t_pruned:.2f} | {t_plain / t_pruned:.1f}x | {same} |",
                  flush=True)
        else:
            print(f"| {n:,} | {k:,} | - | {t_pruned:.2f} | - | - |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

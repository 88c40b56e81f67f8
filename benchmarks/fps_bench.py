"""Farthest point sampling at scale: the plain loop against the fast samplers, same run.

    .venv/bin/python benchmarks/fps_bench.py [--sizes 5000 10000 50000 200000] [--ratio 8]
                                             [--threads 1] [--skip-plain-above 200000]
    .venv/bin/python benchmarks/fps_bench.py --features [--sizes 5000 10000 50000 [200000]]
                                             [--kinds mesh gaussian]

Positions (3 numbers per vertex, as our own models sample) of a thin uneven shell, the shape of
mesh vertices; K = N / ratio tokens (the official K = N/8). Each row: seconds of the plain loop
(backend/models/farthest_point_sampling._fps_loop, the reference) and of the pruned sampler
(backend/models/fps_spatial.py), their ratio, and whether the picks are identical.

--features: 256-d features, as the official model samples, of two kinds: a fixed random MLP
(Linear + GELU layers) of the shell's positions, correlated and low-dimensional like vertex
features, and iid Gaussian. Each row adds the seconds of K plain matrix-vector products
(torch.mv) of the same N x 256 matrix, timed in the same run: the filtered sampler
(backend/models/fps_features.py) makes one per pick, so their ratio is its overhead.
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
from backend.models.fps_features import farthest_features  # noqa: E402
from backend.models.fps_spatial import farthest_points  # noqa: E402


def shell(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, np.pi, n)
    r = 1 + 0.3 * np.sin(5 * u)
    return np.stack([r * np.cos(u) * np.sin(v), 0.5 * np.sin(u) * np.sin(v), 2 * np.cos(v)],
                    axis=1).astype(np.float32)


def mesh_features(n: int, dim: int = 256, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 128), torch.nn.GELU(), torch.nn.Linear(128, dim),
                              torch.nn.GELU(), torch.nn.Linear(dim, dim))
    with torch.no_grad():
        return net(torch.from_numpy(shell(n, seed)))


def gaussian_features(n: int, dim: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


FEATURES = {"mesh": ("mesh MLP", mesh_features), "gaussian": ("iid Gaussian", gaussian_features)}


def feature_table(sizes, ratio: int, skip_plain_above: int, kinds=tuple(FEATURES)) -> None:
    print("| features | N | K | plain loop s | filtered s | K matvecs s | filtered / matvecs "
          "| same picks |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for n in sizes:
        k = n // ratio
        for name, make in (FEATURES[kind] for kind in kinds):
            x = fps.denormal_safe(make(n).contiguous())
            out, clock = torch.empty(n), time.perf_counter()
            for slot in range(k):
                torch.mv(x, x[slot % n], out=out)
            t_mv = time.perf_counter() - clock
            clock = time.perf_counter()
            fast = farthest_features(x, k)
            t_fast = time.perf_counter() - clock
            plain, same = "-", "-"
            if n <= skip_plain_above:
                clock = time.perf_counter()
                want = fps._fps_loop(x, k, torch.full((k,), -1, dtype=torch.long))
                plain = f"{time.perf_counter() - clock:.2f}"
                same = "yes" if torch.equal(want, fast) else "NO"
            print(f"| {name} | {n:,} | {k:,} | {plain} | {t_fast:.2f} | {t_mv:.2f} "
                  f"| {t_fast / t_mv:.2f} | {same} |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        help="default 5000 10000 50000 200000; with --features 5000 10000 50000 "
                             "(the plain loop takes minutes per pick set at 200000)")
    parser.add_argument("--features", action="store_true",
                        help="256-d features against K matrix-vector products instead of positions")
    parser.add_argument("--kinds", nargs="+", choices=sorted(FEATURES), default=list(FEATURES),
                        help="which features (with --features)")
    parser.add_argument("--ratio", type=int, default=8, help="K = N / ratio")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the plain loop, the products)")
    parser.add_argument("--skip-plain-above", type=int, default=10**9,
                        help="time the plain loop only up to this N")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.features:
        feature_table(args.sizes or [5000, 10000, 50000], args.ratio, args.skip_plain_above,
                      args.kinds)
        return 0
    print(f"| N | K | plain loop s | pruned s | speed-up | same picks |")
    print("|---:|---:|---:|---:|---:|---|")
    for n in args.sizes or [5000, 10000, 50000, 200000]:
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

"""Large meshes end to end with the embedded default model: where an Animate's time goes.

    .venv/bin/python benchmarks/large_mesh_bench.py [--sizes 5000 50000 200000]
        [--full-up-to 50000] [--num-traj K] [--threads T]

Each size runs `backend.pipeline.animate` on a torus of N vertices in a fresh process (so the
peak memory is its own), with the default number of tokens (max(512, N/8)) unless --num-traj.
Up to --full-up-to vertices the whole Standard animation runs; above it the sampler runs a single
flow evaluation (one Euler step) and the Standard figure is estimated as encode + 16 x that
evaluation + decode, marked "est.", since 16 evaluations over 25k tokens are many minutes of CPU.
Columns: tokens, then seconds for prepare (welding, edges), encode (neighbour features, farthest
point sampling, the encoder), text, one flow evaluation, sampling (Standard), decode, Keep Shape
(the default, auto), the Standard total, and the process's peak memory.
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
STANDARD_EVALUATIONS = 16


def measure(n: int, full: bool, num_traj: int | None) -> dict:
    from backend.denormals import flush_denormals
    from backend.bench import torus_mesh
    from backend.model_folder import load_model
    from backend.model_manager import resolve_model
    from backend.pipeline import animate, pick_device

    flush_denormals()
    vertices, quads = torus_mesh(n)
    model = load_model(resolve_model("default", None), pick_device("cpu"))
    options = {"quality": "standard"} if full else {"steps": 2, "solver": "euler"}
    clock = time.perf_counter()
    result = animate(vertices, quads, "a ring spins", model=model, seed=0, device="cpu",
                     num_traj=num_traj, **options)
    wall = time.perf_counter() - clock
    t = result.timings
    evaluation = t["sample"] / (STANDARD_EVALUATIONS if full else 1)
    sample = t["sample"] if full else STANDARD_EVALUATIONS * evaluation
    total = wall if full else wall - t["sample"] + sample
    return {"n": int(vertices.shape[0]), "k": result.num_tokens, "full": full,
            "prepare": t.get("prepare", 0.0), "encode": t["encode"], "text": t.get("text", 0.0),
            "evaluation": evaluation, "sample": sample, "decode": t["decode"],
            "keep_shape": t.get("keep_shape", 0.0), "total": total,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000, 200000])
    parser.add_argument("--full-up-to", type=int, default=50000)
    parser.add_argument("--num-traj", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child's own size
    args = parser.parse_args(argv)
    if args.one:
        n, full = json.loads(args.one)
        print(json.dumps(measure(n, full, args.num_traj)))
        return 0
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print("| N | tokens | prepare s | encode s | text s | 1 flow eval s | sampling s (16) | "
          "decode s | keep shape s | Standard total s | peak GB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        full = n <= args.full_up_to
        command = [sys.executable, __file__, "--one", json.dumps([n, full])]
        if args.num_traj:
            command += ["--num-traj", str(args.num_traj)]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"| {n:,} | error: {run.stderr.strip().splitlines()[-1][:120]} |", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        mark = "" if r["full"] else " est."
        print(f"| {r['n']:,} | {r['k']:,} | {r['prepare']:.2f} | {r['encode']:.1f} | {r['text']:.2f} | "
              f"{r['evaluation']:.2f} | {r['sample']:.1f}{mark} | {r['decode']:.1f} | {r['keep_shape']:.1f} | "
              f"{r['total']:.1f}{mark} | {r['peak_gb']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

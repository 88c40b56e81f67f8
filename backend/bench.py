"""`python -m backend bench`: time and peak memory of each stage at the official model size.

Every (size, path) pair runs in a fresh subprocess so that its peak memory is its own. The
"dense" path is the naive reference the tests keep (tests/backend/dense_reference.py: N x N adjacency,
zero-padding to 4096 rows, unblocked attention), shown beside ours while it fits in memory.
Random weights: the timings do not depend on the values.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DENSE_BUDGET_BYTES = 20 * 2**30  # skip the dense path where its N x N buffers alone exceed this


def torus_mesh(n_target: int):
    """A closed quad torus with about n_target vertices (rows x cols), as (vertices, quads)."""
    rows = max(3, int(math.sqrt(n_target / 2)))
    cols = max(3, n_target // rows)
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, rows, endpoint=False),
                       np.linspace(0, 2 * np.pi, cols, endpoint=False), indexing="ij")
    verts = np.stack([(2 + np.cos(v)) * np.cos(u), (2 + np.cos(v)) * np.sin(u), np.sin(v)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    a = i * cols + j
    b = ((i + 1) % rows) * cols + j
    c = ((i + 1) % rows) * cols + (j + 1) % cols
    d = i * cols + (j + 1) % cols
    return verts, np.stack([a, b, c, d], -1).reshape(-1, 4)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_one(n: int, dense: bool, device: str, num_traj: int | None) -> dict:
    """Run preprocessing, encode, one guided flow evaluation and decode once; return timings."""
    import torch

    from .config import FlowConfig, VAEConfig
    from .models.flow import DyMeshMMDiT
    from .models.vae import DyMeshVAE
    from .pipeline import pick_device

    dev = pick_device(device)
    torch.manual_seed(0)
    vae = DyMeshVAE(VAEConfig()).eval().to(dev)
    flow = DyMeshMMDiT(FlowConfig(), 768).eval().to(dev)
    baseline = peak_rss_bytes()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out: dict = {"n": n, "path": "dense" if dense else "sparse"}
    stages = run_stages(vae, flow, *torus_mesh(n), dev, dense=dense, num_traj=num_traj)
    flows, decodes = stages.pop("flow_eval_runs_s"), stages.pop("decode_runs_s")
    out.update(stages, flow_eval_s=flows[0], decode_s=decodes[0])
    out["peak_rss_gb"] = peak_rss_bytes() / 2**30
    out["model_rss_gb"] = baseline / 2**30
    if dev.type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    out["device"] = str(dev)
    return out


def run_stages(vae, flow, verts, quads, dev, *, dense: bool = False, num_traj: int | None = None,
               pad_to: int = 4096, flow_evals: int = 1, decode_runs: int = 1, context=None) -> dict:
    """Prepare one mesh, then neighbour features, FPS, encode, `flow_evals` guided flow
    evaluations (batch 2: prompt and null prompt) and `decode_runs` decodes, each timed alone.

    Shared with benchmarks/gpu_bench.py, which repeats the flow and the decode to leave out a
    warm-up or a compile, and passes `context` (autocast, attention swaps) to wrap the stages.
    """
    import contextlib

    import torch

    from .mesh import prepare_mesh
    from .models.farthest_point_sampling import sample_token_indices
    from .pipeline import default_num_tokens, weighted_padding

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out: dict = {}
    t = time.perf_counter()
    prep = prepare_mesh(verts, quads)
    out["prepare_s"] = time.perf_counter() - t
    u = prep.normalized.shape[0]
    k = num_traj or default_num_tokens(u, vae.config.num_traj)
    out.update(n=u, k=k)

    with torch.inference_mode(), _dense_context(dense), \
            context if context is not None else contextlib.nullcontext():
        rest = torch.from_numpy(prep.normalized).to(dev)
        edges = torch.from_numpy(prep.edges).to(dev)
        if dense:  # the official way: real zero rows up to pad_to, dense mask inside the patch
            rest, key_bias = torch.cat([rest, rest.new_zeros(max(pad_to - u, 0), 3)]), None
        else:
            rest, key_bias = weighted_padding(rest, pad_to)
        rest = rest[None]
        sync()
        t = time.perf_counter()
        feats = vae.vertex_features(rest, edges)
        sync()
        out["neighbour_s"] = time.perf_counter() - t
        t = time.perf_counter()
        idx = sample_token_indices(feats[0, :u], u, k, torch.Generator().manual_seed(0)).to(dev)
        sync()
        out["fps_s"] = time.perf_counter() - t
        t = time.perf_counter()
        frames = rest.unsqueeze(1).expand(1, vae.config.T, -1, -1)
        enc = vae.encode(frames, edges, idx[None], key_bias=key_bias, pc0_embed=feats)
        sync()
        out["encode_s"] = time.perf_counter() - t + out["neighbour_s"] + out["fps_s"]
        x = torch.randn(2, k, flow.config.input_channels, device=dev)
        text = torch.randn(2, 77, flow.clip_token_mlp.in_features, device=dev)
        times, keep = torch.full((2,), 0.5, device=dev), torch.tensor([1.0, 0.0], device=dev)
        out["flow_eval_runs_s"] = []
        for _ in range(flow_evals):
            t = time.perf_counter()
            flow(x, times, text, keep)
            sync()
            out["flow_eval_runs_s"].append(time.perf_counter() - t)
        latent = torch.cat([enc.x0, enc.mean], -1)
        out["decode_runs_s"] = []
        for _ in range(decode_runs):
            t = time.perf_counter()
            vae.decode(latent, feats[:, :u], rest[:, :u], vertex_block=u if dense else 65536)
            sync()
            out["decode_runs_s"].append(time.perf_counter() - t)
    return out


def _dense_context(dense: bool):
    import contextlib

    if not dense:
        return contextlib.nullcontext()
    sys.path.insert(0, str(REPO / "tests" / "backend"))
    from dense_reference import dense_reference  # the tests' naive path, never shipped

    return dense_reference()


def run_bench(sizes, *, device="auto", dense_up_to=20000, num_traj=None, threads=None):
    rows = []
    for n in sizes:
        for dense in (False, True):
            padded = max(n, 4096)
            if dense and (n > dense_up_to or padded * padded * 5 > DENSE_BUDGET_BYTES):
                rows.append({"n": n, "path": "dense", "skipped": f"needs ~{padded * padded * 5 / 2**30:.0f} GB "
                             "for its N x N mask and scores" if n > dense_up_to else "over budget"})
                continue
            cmd = [sys.executable, "-m", "backend.bench", json.dumps(
                {"n": n, "dense": dense, "device": device, "num_traj": num_traj})]
            env = dict(os.environ)
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
                rows.append({"n": n, "path": "dense" if dense else "sparse", "skipped": f"failed: {tail[:80]}"})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(_format_row(rows[-1]), file=sys.stderr, flush=True)
    print()
    print(format_table(rows))
    return rows


# (key, title, format); numbers are right-aligned to the title's width
COLUMNS = [("n", "N", "d"), ("path", "path", "s"), ("k", "K", "d"), ("prepare_s", "prep s", ".2f"),
           ("neighbour_s", "nbr s", ".2f"), ("fps_s", "FPS s", ".1f"), ("encode_s", "encode s", ".1f"),
           ("flow_eval_s", "1 flow eval s", ".2f"), ("decode_s", "decode s", ".2f"),
           ("peak_rss_gb", "peak RSS GB", ".2f"), ("peak_gpu_gb", "peak GPU GB", ".2f")]
WIDTH = 8


def _format_row(row: dict) -> str:
    if "skipped" in row:
        return f"{row['n']:>{WIDTH}} {row['path']:>{WIDTH}}  {row['skipped']}"
    cells = []
    for key, title, fmt in COLUMNS:
        width = max(WIDTH, len(title))
        cells.append(f"{row[key]:>{width}{fmt}}" if key in row else " " * width)
    return " ".join(cells)


def format_table(rows) -> str:
    header = " ".join(f"{title:>{max(WIDTH, len(title))}}" for _, title, _ in COLUMNS)
    return "\n".join([header] + [_format_row(r) for r in rows])


if __name__ == "__main__":
    import torch

    torch.set_flush_denormal(True)  # as the CLI and the server run the models
    spec = json.loads(sys.argv[1])
    print(json.dumps(measure_one(spec["n"], spec["dense"], spec["device"], spec["num_traj"])))

"""Official-size inference on a GPU: the dense reference path beside ours in fp32, bf16, bf16 with
the VAE's attention through SDPA, and bf16 compiled, at 5k / 10k / 50k / 200k vertices.

    .venv/bin/python benchmarks/gpu_bench.py --out $OUT            # everything, at most ~9 minutes
    .venv/bin/python benchmarks/gpu_bench.py --out $OUT --quick    # 10k and 5k only, ~4 minutes
    .venv/bin/python benchmarks/gpu_bench.py --tiny --device cpu   # small dims, seconds (the test)

Random weights on a torus mesh (timings do not depend on the values), the stage sequence of
`python -m backend bench` (backend/bench.run_stages). Each (size, variant) row is a fresh process,
so its peak GPU memory is its own and an out-of-memory, a failed compile or a crash becomes that
row's "error: ..." cell. Per row: a small-mesh warm-up (CUDA context, cuBLAS), then encode
(neighbour features + FPS + encoder), 1 + --evals guided flow evaluations at batch 2 (the first
left out: warm-up, or the compile), the decode (twice when compiled) and the peak of
torch.cuda.max_memory_allocated. A 126-evaluation animation (the official 64-step midpoint
schedule) is estimated as encode + 126 evals + decode, our Standard preset as encode + 16 + decode;
speed-ups are against dense-fp32's 126-evaluation estimate at the same N.

Variants:
  dense-fp32          the official-style computation (tests/backend/dense_reference.py: N x N
                      adjacency, zero rows up to 4096, unblocked attention); skipped where its
                      N x N buffers would not fit in GPU memory (estimated before allocating)
  ours-fp32           the shipped code (edge-list neighbour attention, blocked cross-attention)
  ours-bf16           the same under autocast bf16, as the pipeline's precision=bf16
  ours-bf16-sdpa      + the VAE's cross- and self-attention through F.scaled_dot_product_attention
                      (the shipped code forms blocks of scores; the flow already uses SDPA); the
                      fused kernels that accept each attention shape go into results.json
  ours-bf16-compiled  ours-bf16 with torch.compile of the flow and of the VAE decode; the compile
                      is left out of the timings and shown in its own column

FPS is the same plain loop in every variant (the official code has a CUDA kernel for it), so at
large N the encode column is mostly FPS for all of them.

Time (estimated, not yet run on a GPU): a row costs about 10-15 s of process start and warm-up; 200k rows ~30-40 s (FPS of 25k
tokens); a compiled row 1-2 minutes more. Rows run in order of importance (all of 10k first, then
the larger sizes, 5k, and the compiled rows of the other sizes last); no row starts once --budget
seconds (default 500) are spent or when its rough cost no longer fits, and each is killed at
--time-limit or at the budget's end, so the whole run stays inside a 10-minute command. The
table and results.json are rewritten after every row, so a killed run still leaves what it did.
Inductor's kernel cache (/tmp) is shared between rows, so a later compile may be quicker.
fp32 means fp32 matmuls (TF32 off, torch's default; recorded per row as tf32_matmul).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OFFICIAL_EVALS = 126  # 64-point grid, midpoint: 63 steps x 2 (backend.sampling.evaluations_per_run)
STANDARD_EVALS = 16   # the Standard preset (backend/quality.py)
FOCUS_SIZE = 10000    # the size the goal is stated at: all its rows run first
DENSE_BYTES_PER_ELEMENT = 10  # N x N: mask, its negation, and two float32 score copies at once
FAIL_ENV = "GPU_BENCH_FAIL"  # "N:variant" or "variant": that row raises, to test the error cells

VARIANTS = {
    "dense-fp32": dict(dense=True, precision="fp32", sdpa=False, compile=False),
    "ours-fp32": dict(dense=False, precision="fp32", sdpa=False, compile=False),
    "ours-bf16": dict(dense=False, precision="bf16", sdpa=False, compile=False),
    "ours-bf16-sdpa": dict(dense=False, precision="bf16", sdpa=True, compile=False),
    "ours-bf16-compiled": dict(dense=False, precision="bf16", sdpa=False, compile=True),
}
# Rough seconds a row needs at official size: a row is not started with less budget than this
# (a compile cut off halfway measures nothing).
ROW_COST_S = {"ours-bf16-compiled": 120}
DEFAULT_ROW_COST_S = 30


# ----------------------------------------------------------------------------- one row (child)

def model_configs(tiny: bool):
    from backend.config import FlowConfig, VAEConfig

    if tiny:
        return (VAEConfig(enc_depth=1, dec_depth=1, dim=32, heads=2, dim_head=16, num_traj=32),
                FlowConfig(width=64, layers=2, heads=2), 32)
    return VAEConfig(), FlowConfig(), 768


SDPA_BLOCK_ELEMENTS = 1 << 28  # only bounds memory if SDPA falls back to its math kernel
sdpa_shapes: dict[str, tuple] = {}


def sdpa_attention(q, k, v, scale, key_bias=None):
    """backend.models.attention.dense_attention through F.scaled_dot_product_attention, so the
    dispatcher can pick a fused kernel (flash, memory-efficient, cuDNN) that never forms scores."""
    import torch
    import torch.nn.functional as F

    mask = None if key_bias is None else key_bias.to(q.dtype)
    sdpa_shapes.setdefault(_shape_name(q, k, v, mask), (q.shape, k.shape, v.shape, mask is not None))
    rows = max(1, SDPA_BLOCK_ELEMENTS // max(1, k.shape[-2] * q.shape[0] * q.shape[1]))
    parts = [F.scaled_dot_product_attention(q[..., s:s + rows, :], k, v, attn_mask=mask, scale=scale)
             for s in range(0, q.shape[-2], rows)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def _shape_name(q, k, v, mask) -> str:
    dims = lambda t: "x".join(str(d) for d in t.shape)
    return f"q {dims(q)} k {dims(k)} v {dims(v)}" + (" +bias" if mask is not None else "")


def fused_kernels(shapes: dict, dtype, dev) -> dict:
    """Which fused SDPA kernels accept each attention shape the run made (math always does)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    found = {}
    for name, (qs, ks, vs, masked) in shapes.items():
        q = torch.randn(tuple(qs[:-2]) + (min(qs[-2], 1024), qs[-1]), device=dev, dtype=dtype)
        k, v = torch.randn(ks, device=dev, dtype=dtype), torch.randn(vs, device=dev, dtype=dtype)
        mask = torch.zeros(1, 1, 1, ks[-2], device=dev, dtype=dtype) if masked else None
        usable = []
        for label in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
            try:
                with sdpa_kernel(getattr(SDPBackend, label)), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # each refusal explains itself at length
                    F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                usable.append(label.split("_")[0].lower())
            except (RuntimeError, AttributeError):
                pass
        found[name] = usable or ["math only"]
        del q, k, v, mask
    return found


def measure_variant(n: int, variant: str, device: str, evals: int, tiny: bool,
                    compile_mode: str | None = None) -> dict:
    import contextlib

    import torch

    from backend import bench
    from backend.models import vae as vae_module
    from backend.models.flow import DyMeshMMDiT
    from backend.models.vae import DyMeshVAE
    from backend.pipeline import pick_device

    spec = VARIANTS[variant]
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    pad_to = 256 if tiny else 4096
    verts, quads = bench.torus_mesh(n)
    row: dict = {"torch": torch.__version__, "cuda": torch.version.cuda,
                 "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
                 "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    if spec["dense"] and cuda:
        padded = max(len(verts), pad_to)
        need = padded * padded * DENSE_BYTES_PER_ELEMENT
        free, _total = torch.cuda.mem_get_info(dev)
        if need > 0.9 * free:
            return row | {"skipped": f"needs ~{need / 2**30:.0f} GB for its N x N buffers, "
                                     f"{free / 2**30:.0f} GB free"}

    vae_config, flow_config, text_width = model_configs(tiny)
    torch.manual_seed(0)
    vae = DyMeshVAE(vae_config).eval().to(dev)
    flow = DyMeshMMDiT(flow_config, text_width).eval().to(dev)

    def context():
        stack = contextlib.ExitStack()
        if spec["precision"] == "bf16":  # what the pipeline's precision=bf16 does: autocast
            stack.enter_context(torch.autocast(dev.type, dtype=torch.bfloat16))
        if spec["sdpa"]:
            saved = vae_module.dense_attention
            vae_module.dense_attention = sdpa_attention
            stack.callback(setattr, vae_module, "dense_attention", saved)
        return stack

    stages = dict(dense=spec["dense"], pad_to=pad_to)
    # Eager and small, before any compile: CUDA context, cuBLAS handles and allocator pools are
    # then out of the timings, and the compile below sees the real shapes only.
    bench.run_stages(vae, flow, *bench.torus_mesh(100 if tiny else 1000), dev, context=context(), **stages)
    sync()
    sdpa_shapes.clear()  # the warm-up's shapes are not the row's
    if spec["compile"]:
        flow = torch.compile(flow, mode=compile_mode)
        vae.decode = torch.compile(vae.decode, mode=compile_mode)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    run = bench.run_stages(vae, flow, verts, quads, dev, context=context(), flow_evals=1 + evals,
                           decode_runs=2 if spec["compile"] else 1, **stages)
    flows, decodes = run.pop("flow_eval_runs_s"), run.pop("decode_runs_s")
    row.update(run, evals_s=flows, flow_eval_s=sum(flows[1:]) / len(flows[1:]), decode_s=decodes[-1])
    if spec["compile"]:
        # the first call of each compiled function compiles, then runs once as the later calls do
        row["compile_s"] = flows[0] - row["flow_eval_s"] + decodes[0] - decodes[-1]
    if cuda:
        row["peak_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
        row["peak_kind"] = "GPU"
    else:
        row["peak_gb"] = bench.peak_rss_bytes() / 2**30
        row["peak_kind"] = "RSS"
    if spec["sdpa"] and cuda:
        heads, width = flow_config.heads, flow_config.width
        shapes = dict(sdpa_shapes)
        shapes["flow: " + "x".join(map(str, (2, heads, row["k"] + 77, width // heads)))] = (
            (2, heads, row["k"] + 77, width // heads),) * 3 + (False,)
        row["fused_kernels"] = fused_kernels(shapes, torch.bfloat16, dev)
    return row


def device_info(device: str) -> dict:
    import torch

    from backend.pipeline import pick_device

    dev = pick_device(device)
    props = torch.cuda.get_device_properties(dev)
    return {"device_name": props.name, "total_gb": props.total_memory / 2**30,
            "torch": torch.__version__, "cuda": torch.version.cuda}


# ----------------------------------------------------------------------------- the run (parent)

def plan_rows(sizes, variants) -> list[tuple[int, str]]:
    """Every row at FOCUS_SIZE (or the first size), then uncompiled rows largest N first, then
    compiled rows largest N first: the goal's row is measured even if the budget runs out."""
    focus = FOCUS_SIZE if FOCUS_SIZE in sizes else sizes[0]
    others = sorted((s for s in dict.fromkeys(sizes) if s != focus), reverse=True)
    compiled = [v for v in variants if VARIANTS[v]["compile"]]
    eager = [v for v in variants if v not in compiled]
    return ([(focus, v) for v in variants] + [(s, v) for s in others for v in eager]
            + [(s, v) for s in others for v in compiled])


def run_child(payload: dict, timeout: float) -> dict:
    """One row in a fresh process of its own session, so a timeout also ends compile workers."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(payload)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"over its {timeout:.0f} s limit"}
    if proc.returncode == 0:
        try:
            return json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"error": "no result line: " + stdout.strip()[-200:]}
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if proc.returncode < 0:
        reason = f"killed by signal {-proc.returncode}"
    else:
        reason = lines[-1].strip() if lines else f"exit code {proc.returncode}"
    return {"error": reason[:200]}


def speedups(rows: list[dict]) -> None:
    dense = {r["size"]: r for r in rows if r["variant"] == "dense-fp32" and "flow_eval_s" in r}
    for row in rows:
        if "flow_eval_s" not in row:
            continue
        row["official_s"] = row["encode_s"] + OFFICIAL_EVALS * row["flow_eval_s"] + row["decode_s"]
        row["standard_s"] = row["encode_s"] + STANDARD_EVALS * row["flow_eval_s"] + row["decode_s"]
    for row in rows:
        ref = dense.get(row["size"])
        if ref is None or "official_s" not in row:
            continue
        row["speedup"] = ref["official_s"] / row["official_s"]
        if row["variant"] != "dense-fp32":
            row["standard_speedup"] = ref["official_s"] / row["standard_s"]


COLUMNS = [("n", "N", ",d"), ("k", "K", ",d"), ("variant", "variant", "s"),
           ("encode_s", "encode s", ".2f"), ("flow_eval_s", "1 eval s", ".3f"),
           ("official_s", f"{OFFICIAL_EVALS} evals s", ".1f"), ("standard_s", f"{STANDARD_EVALS} evals s", ".1f"),
           ("decode_s", "decode s", ".2f"), ("peak_gb", "peak GB", ".2f"), ("compile_s", "compile s", ".0f"),
           ("speedup", f"x vs dense ({OFFICIAL_EVALS})", ".2f"),
           ("standard_speedup", f"x Standard vs dense {OFFICIAL_EVALS}", ".2f")]


def format_table(rows: list[dict]) -> str:
    variant_order = {v: i for i, v in enumerate(VARIANTS)}
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "|".join("---" if fmt == "s" else "---:" for _, _, fmt in COLUMNS) + "|"]
    for row in sorted(rows, key=lambda r: (r["size"], variant_order.get(r["variant"], 99))):
        cells = []
        for key, _, fmt in COLUMNS:
            value = row.get(key, row["size"] if key == "n" else None)
            cells.append("" if value is None else format(value, fmt) + ("x" if "speedup" in key else ""))
        for kind in ("error", "skipped"):
            if kind in row:  # in the first timing column, so the row still reads N, K, variant
                cells[3] = f"{kind}: {row[kind]}".replace("|", "/")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, info: dict, args: dict, rows: list[dict]) -> str:
    speedups(rows)
    table = format_table(rows)
    header = (f"GPU bench: {info.get('device_name', '?')}, torch {info.get('torch', '?')}, "
              f"CUDA {info.get('cuda') or 'none'}; peak GB = "
              + ("torch.cuda.max_memory_allocated" if args["device"].startswith("cuda") else "peak RSS")
              + f"; {args['evals']} timed flow evaluations per row after 1 warm-up")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(header + "\n\n" + table + "\n")
    (out / "results.json").write_text(json.dumps({"info": info, "args": args, "rows": rows}, indent=1) + "\n")
    return header + "\n\n" + table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_bench_out"))
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="vertex counts (default 5000 10000 50000 200000; --tiny 300 600)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--evals", type=int, default=3, help="timed flow evaluations per row (after 1 warm-up)")
    parser.add_argument("--time-limit", type=float, default=240, help="seconds before a row is killed")
    parser.add_argument("--budget", type=float, default=500, help="seconds after which no row starts")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode of the compiled rows (default torch's; reduce-overhead "
                             "adds CUDA graphs)")
    parser.add_argument("--quick", action="store_true", help="5000 and 10000 vertices only")
    parser.add_argument("--tiny", action="store_true", help="small model dims and meshes: seconds on a CPU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.evals < 1:
        parser.error("--evals must be at least 1")

    if args.child:
        spec = json.loads(args.child)
        fail = os.environ.get(FAIL_ENV)
        if fail and fail in (spec.get("variant"), f"{spec.get('n')}:{spec.get('variant')}"):
            # before importing torch: the test sees a failing row without paying for one
            raise RuntimeError(f"forced failure ({FAIL_ENV}={fail})")
        import torch

        torch.set_flush_denormal(True)  # as the CLI and the server run the models
        if spec.get("info"):
            print(json.dumps(device_info(spec["device"])))
        else:
            print(json.dumps(measure_variant(spec["n"], spec["variant"], spec["device"], spec["evals"],
                                             spec["tiny"], spec.get("compile_mode"))))
        return 0

    sizes = args.sizes or ([300, 600] if args.tiny else [5000, 10000] if args.quick else
                           [5000, 10000, 50000, 200000])
    cuda = args.device.startswith("cuda")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child"}
    settings["sizes"] = sizes
    started = time.monotonic()
    info = {}
    if cuda:
        info = run_child({"info": True, "device": args.device}, timeout=120)
        if "error" in info:
            write_outputs(args.out, info, settings, [])
            print(f"gpu_bench: no usable GPU ({info['error']})", file=sys.stderr)
            return 1
    rows: list[dict] = []
    plan = plan_rows(sizes, args.variants)
    print(f"{len(plan)} rows on {info.get('device_name', args.device)}, budget {args.budget:.0f} s",
          file=sys.stderr, flush=True)
    for n, variant in plan:
        row = {"size": n, "variant": variant}
        left = args.budget - (time.monotonic() - started)
        padded = max(n, 4096)
        if VARIANTS[variant]["compile"] and not cuda:
            row["skipped"] = "torch.compile is timed on CUDA only (a tiny CPU compile takes ~1 minute)"
        elif VARIANTS[variant]["dense"] and "total_gb" in info and \
                padded * padded * DENSE_BYTES_PER_ELEMENT > info["total_gb"] * 2**30:
            row["skipped"] = (f"needs ~{padded * padded * DENSE_BYTES_PER_ELEMENT / 2**30:.0f} GB for its "
                              f"N x N buffers, the GPU has {info['total_gb']:.0f} GB")
        elif left < (0 if args.tiny else ROW_COST_S.get(variant, DEFAULT_ROW_COST_S)):
            row["skipped"] = f"time budget spent ({args.budget:.0f} s)"
        else:
            clock = time.monotonic()
            row |= run_child({"n": n, "variant": variant, "device": args.device, "evals": args.evals,
                              "tiny": args.tiny, "compile_mode": args.compile_mode},
                             timeout=min(args.time_limit, left))
            row["wall_s"] = time.monotonic() - clock
        for key in ("device_name", "torch", "cuda"):
            if key in row:
                info.setdefault(key, row[key])
        rows.append(row)
        status = row.get("error") or row.get("skipped") or f"{row.get('flow_eval_s', 0):.3f} s per eval"
        print(f"[{time.monotonic() - started:5.0f} s] N={n} {variant}: {status}", file=sys.stderr, flush=True)
        write_outputs(args.out, info, settings, rows)
    print(write_outputs(args.out, info, settings, rows))
    print(f"\nwritten: {args.out / 'table.md'}, {args.out / 'results.json'}")
    if any("fused_kernels" in r for r in rows):
        print("\nfused SDPA kernels that accept each attention shape (ours-bf16-sdpa):")
        for r in rows:
            for name, kernels in r.get("fused_kernels", {}).items():
                print(f"  N={r['size']}: {name}: {', '.join(kernels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

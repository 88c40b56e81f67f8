"""Which motion families survive the VAE: the family judge labels reconstructions, per family.

The eval table's reconstruction error is one mean; a family can be lost while the mean looks
fine (a shake is small, so erasing it costs little error). This probe encodes and decodes each
of the first LIMIT clips of DATA with each model's VAE, and the judge that `eval` uses (trained
on the ground truth of the clips beyond LIMIT) labels the reconstructions. A family the judge
no longer recognises cannot be generated either, whatever the flow does: check this before
training a flow on a new VAE.

    .venv/bin/python research/probes/probe_reconstruction.py --data DATA/eval --limit 270 \\
        --model backend/default_model [--model OTHER ...] [--families shake,sway]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend

from backend import evaluate as ev, mesh as meshprep  # noqa: E402
from backend.model_folder import load_model  # noqa: E402
from backend.data.shards import iter_dataset  # noqa: E402


def _normalised(sample) -> np.ndarray:
    return ev.normalised(sample.frames, *meshprep.normalize(sample.frames[0].astype(np.float32)))


def probe(model_dirs: list[str], data: Path, limit: int, families: list[str] | None = None,
          judge_steps: int = 3000) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {family: {"n", "recognised", "amplitude", "error_pct"}}} over the first `limit` clips."""
    everything = [s for s in iter_dataset(data) if s.family]
    evaluated, pool = everything[:limit], everything[limit:]
    names = sorted({s.family for s in everything})
    if {s.family for s in pool} != set(names):
        raise SystemExit(f"the clips of {data} beyond the first {limit} must cover every family, "
                         "so the judge learns them from clips it does not label; use a smaller --limit.")
    label = {f: i for i, f in enumerate(names)}
    judge = ev.train_classifier([_normalised(s) for s in pool], np.array([label[s.family] for s in pool]),
                                len(names), 0, judge_steps)
    wanted = families or sorted({s.family for s in evaluated})
    chosen = [s for s in evaluated if s.family in wanted]
    truth = [_normalised(s) for s in chosen]
    out = {}
    for model_dir in model_dirs:
        model = load_model(model_dir)
        recon = [ev.reconstruct(model, gt, s.faces, 0) for gt, s in zip(truth, chosen)]
        predicted = ev.classify(judge, recon)
        rows = {}
        for family in wanted:
            idx = [i for i, s in enumerate(chosen) if s.family == family]
            if not idx:
                continue
            rows[family] = {
                "n": len(idx),
                "recognised": float(np.mean([predicted[i] == label[family] for i in idx])),
                "amplitude": float(np.mean([ev.amplitude(recon[i]) for i in idx]) /
                                   max(np.mean([ev.amplitude(truth[i]) for i in idx]), 1e-12)),
                "error_pct": float(np.mean([ev.percent_error(recon[i], truth[i]).mean() for i in idx])),
            }
        out[str(model_dir)] = rows
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="model folder (repeat to compare)")
    p.add_argument("--data", type=Path, required=True, help="held-out dataset (make-dataset --split eval)")
    p.add_argument("--limit", type=int, default=270, help="clips probed; the judge learns from the rest")
    p.add_argument("--families", default="", help="comma-separated families (default: all)")
    p.add_argument("--judge-steps", type=int, default=3000)
    args = p.parse_args()
    results = probe(args.model, args.data, args.limit, [f for f in args.families.split(",") if f] or None,
                    args.judge_steps)
    print("| model | family | clips | judge recognises | amplitude / ground truth | error (% of bbox diagonal) |")
    print("|---|---|---:|---:|---:|---:|")
    for model_dir, rows in results.items():
        for family, r in rows.items():
            print(f"| {model_dir} | {family} | {r['n']} | {100 * r['recognised']:.0f}% | {r['amplitude']:.2f}x "
                  f"| {r['error_pct']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

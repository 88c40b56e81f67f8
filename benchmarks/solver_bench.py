"""Evaluations against deviation: every solver and grid, on held-out clips, with the embedded model.

    .venv/bin/python benchmarks/solver_bench.py [--clips 50] [--seed 1]

For each held-out procedural clip (evaluation meshes, held-out caption templates; the families
in turn) the reference is the midpoint solver with 65 grid points (128 evaluations) on the
uniform grid. Every other schedule runs the same mesh, prompt and seed (so the same noise);
deviation = mean vertex distance to the reference / the reference's mean motion (distance of the
vertices from their first frame). Seconds are the mean wall time of one animate in this run.
The quality presets (backend/quality.py) are printed with the row they use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import pipeline  # noqa: E402
from backend.data.procedural import FAMILIES, sample_at  # noqa: E402
from backend.model_folder import load_model  # noqa: E402
from backend.model_manager import EMBEDDED_DIR  # noqa: E402
from backend.quality import SCHEDULES, Schedule  # noqa: E402
from backend.solvers import SOLVERS  # noqa: E402

EVALUATIONS = (8, 16)   # the presets' budgets; 32 on the uniform grid shows where they converge
SHIFTS = (1.0, 2.0)


def schedules() -> list[Schedule]:
    out = []
    for name, solver in SOLVERS.items():
        for evaluations in EVALUATIONS + (32,):
            if evaluations % solver.evaluations_per_step:
                continue
            for shift in SHIFTS if evaluations in EVALUATIONS else (1.0,):
                out.append(Schedule(name, evaluations // solver.evaluations_per_step + 1, shift))
    return out


def run(model, clip, schedule: Schedule):
    """Animate with exactly this schedule (the preset machinery is bypassed on purpose)."""
    original = pipeline.schedule_for
    pipeline.schedule_for = lambda *args, **kwargs: schedule
    try:
        clock = time.perf_counter()
        frames = pipeline.animate(clip.frames[0], clip.faces, clip.captions[0], model=model, seed=1).frames
        return frames, time.perf_counter() - clock
    finally:
        pipeline.schedule_for = original


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 keeps a shared machine's timings steady)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(EMBEDDED_DIR)
    rows = schedules()
    deviation = {s: [] for s in rows}
    seconds = {s: [] for s in rows}
    reference_seconds = []
    for index in range(args.clips):
        clip = sample_at(index, 0, "eval", [FAMILIES[index % len(FAMILIES)]])
        reference, took = run(model, clip, Schedule("midpoint", 65, 1.0))
        reference_seconds.append(took)
        motion = np.linalg.norm(reference - reference[:1], axis=-1).mean()
        for schedule in rows:
            frames, took = run(model, clip, schedule)
            deviation[schedule].append(np.linalg.norm(frames - reference, axis=-1).mean() / motion)
            seconds[schedule].append(took)
        print(f"clip {index + 1}/{args.clips} done", file=sys.stderr, flush=True)
    presets = {v: k for k, v in SCHEDULES.items() if v is not None}
    print(f"\n{args.clips} held-out clips, seed 1, {torch.get_num_threads()} torch thread(s); reference: "
          f"midpoint, 128 evaluations, {np.mean(reference_seconds):.2f} s a take\n")
    print("| solver | grid | evaluations | deviation mean | median | p90 | worst | seconds | preset |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for schedule in rows:
        d = 100 * np.asarray(deviation[schedule])
        evaluations = (schedule.steps - 1) * SOLVERS[schedule.solver].evaluations_per_step
        grid = "uniform" if schedule.shift == 1.0 else f"shift {schedule.shift:g}"
        print(f"| {schedule.solver} | {grid} | {evaluations} | {d.mean():.1f}% | {np.median(d):.1f}% | "
              f"{np.percentile(d, 90):.1f}% | {d.max():.1f}% | {np.mean(seconds[schedule]):.2f} | "
              f"{presets.get(schedule, '')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

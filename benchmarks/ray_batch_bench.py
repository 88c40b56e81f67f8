"""Batch throughput: the local queue against Ray with 1 and 2 workers, same jobs, same run.

    .venv/bin/python benchmarks/ray_batch_bench.py [--jobs 8] [--mesh examples/bird.obj]
                                                   [--quality standard] [--model default]

Each row runs the same animate jobs (one mesh, one prompt, seeds 0..jobs-1) through
`backend.batch_run.run_batch` into a fresh folder: "local" is the queue of `python -m backend
batch` (this process, one warm model, torch's threads over every core); "ray N" starts a Ray on
this machine with N workers, each with one warm model and cores / N CPUs. Reported: the wall
time from the call to the last result (start-up and model loading included), the time from the
first job's start to the last result (steady state), and jobs per minute on each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from backend.batch_jobs import BatchStatus, read_jobs  # noqa: E402
from backend.batch_run import BatchSettings, Reporter, run_batch  # noqa: E402


def one_row(label: str, jobs_file: Path, settings: BatchSettings, workers: int) -> dict:
    jobs = read_jobs(jobs_file)
    status = BatchStatus(jobs, None, settings.max_attempts)
    marks: list[tuple[str, float]] = []
    report = Reporter(len(jobs), listener=lambda e: marks.append((e["event"], time.perf_counter())),
                      quiet=True)
    clock = time.perf_counter()
    counts = run_batch(jobs, status, settings, report, use_ray=workers > 0, workers=workers,
                       cpus_per_worker=max(1, (os.cpu_count() or 1) // max(workers, 1)))
    end = max(t for kind, t in marks if kind == "done")
    first = min(t for kind, t in marks if kind == "started")
    wall, steady = end - clock, end - first
    return {"runner": label, "jobs": counts["done"], "failed": counts["failed"],
            "wall_s": wall, "steady_s": steady, "per_min": 60 * counts["done"] / wall,
            "steady_per_min": 60 * counts["done"] / steady}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--mesh", type=Path, default=REPO / "examples" / "bird.obj")
    parser.add_argument("--prompt", default="a bird flaps its wings")
    parser.add_argument("--quality", default="standard")
    parser.add_argument("--model", default="default")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="0: the local queue; N: Ray with N workers")
    args = parser.parse_args(argv)
    settings = BatchSettings(model=args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            folder = Path(tmp) / f"w{workers}"
            folder.mkdir()
            jobs_file = folder / "jobs.jsonl"
            jobs_file.write_text("".join(json.dumps(
                {"mesh": str(args.mesh.resolve()), "prompt": args.prompt, "out": f"{i}.npz",
                 "seed": i, "quality": args.quality}) + "\n" for i in range(args.jobs)))
            label = "local queue" if workers == 0 else f"ray, {workers} worker{'s' if workers > 1 else ''}"
            rows.append(one_row(label, jobs_file, settings, workers))
            print(f"{label}: done", file=sys.stderr, flush=True)
    base = rows[0]["per_min"]
    print(f"\n{args.jobs} jobs: {args.mesh.name}, \"{args.prompt}\", {args.quality}, model "
          f"{args.model}, {os.cpu_count()} cores\n")
    print("| runner | done | wall s | jobs/min | steady s | jobs/min steady | vs first row |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['runner']} | {row['jobs']} | {row['wall_s']:.1f} | {row['per_min']:.1f} | "
              f"{row['steady_s']:.1f} | {row['steady_per_min']:.1f} | {row['per_min'] / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the Blender add-on adds to an Animate, and which backend thread count to use.

    .venv/bin/python benchmarks/addon_overhead_bench.py [--repeat 3] [--threads 1 2]
                                                        [--load] [--mesh examples/bird.obj]

One Blender (the bpy wheel) with the add-on enabled and the backend warm (one Animate first,
not timed). Then, for each backend thread count, --repeat Animates of the same request through
the panel's operator (execute, as the headless CLI runs it): the wall time of the operator
against the backend's own time for that job (Result.seconds, measured inside the backend
process), both from the same job. The difference is the add-on's cost: reading the mesh,
writing the request and reading the result files, the pipes, and writing the shape keys.

--load adds a busy process on one core for the whole run (an artist's machine doing something
else), to see how each thread count copes with a shared CPU. The table says the best thread
count of this run; the preference Backend Threads (0: Auto) takes the number. The add-on starts
the backend with OMP_WAIT_POLICY=PASSIVE unless the environment says otherwise: set it to
ACTIVE before running this to see what spinning OpenMP threads cost on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
import bpy
sys.path.insert(0, sys.argv[1])
import addon_utils
import animateanymesh_addon
mesh, repeat, threads_list = sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
animateanymesh_addon.__time__ = os.path.getmtime(animateanymesh_addon.__file__)
addon_utils.enable("animateanymesh_addon", default_set=True)
from animateanymesh_addon import session
prefs = session.preferences()
prefs.python_mode, prefs.python_path = "PATH", sys.executable
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("animateanymesh_addon", default_set=True)
prefs = session.preferences()
prefs.python_mode, prefs.python_path = "PATH", sys.executable
bpy.ops.wm.obj_import(filepath=mesh)
obj = [o for o in bpy.data.objects if o.type == "MESH"][0]
s = bpy.context.scene.animateanymesh
s.prompt, s.seed = "a bird flaps its wings", 1
rows = []
for threads in threads_list:
    prefs.backend_threads = threads
    session.forget_client()
    for i in range(repeat + 1):
        s.seed = 100 * threads + i   # a new request each time: the add-on reuses a repeated one
        clock = time.perf_counter()
        result = bpy.ops.animateanymesh.animate(objects=obj.name)
        wall = time.perf_counter() - clock
        job = session.last_run().job
        if i:  # the first one warms the backend (start, model load)
            assert result == {"FINISHED"} and job.seconds, (result, job.seconds)
            rows.append({"threads": threads, "wall": wall, "backend": job.seconds})
session.forget_client()
print("ROWS " + json.dumps(rows), flush=True)
"""


def busy() -> None:
    while True:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--mesh", type=Path, default=REPO / "examples" / "bird.obj")
    args = parser.parse_args(argv)
    hog = None
    if args.load:
        hog = multiprocessing.Process(target=busy, daemon=True)
        hog.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"BLENDER_USER_RESOURCES": str(Path(tmp) / "user"), "PYTHONDONTWRITEBYTECODE": "1"}
            import os

            proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(args.mesh),
                                   str(args.repeat), json.dumps(args.threads)],
                                  capture_output=True, text=True, env={**os.environ, **env},
                                  cwd=REPO, timeout=3600)
    finally:
        if hog is not None:
            hog.terminate()
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ROWS ")), None)
    if line is None:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return 1
    rows = json.loads(line[5:])
    machine = "one core kept busy" if args.load else "no other load started"
    print(f"mesh {args.mesh.name}, {args.repeat} warm Animates per thread count, {machine}\n")
    print("| backend threads | add-on wall s | backend s | add-on adds s | adds % |")
    print("|---:|---:|---:|---:|---:|")
    best = None
    for threads in args.threads:
        mine = [r for r in rows if r["threads"] == threads]
        wall = sum(r["wall"] for r in mine) / len(mine)
        back = sum(r["backend"] for r in mine) / len(mine)
        print(f"| {threads} | {wall:.2f} | {back:.2f} | {wall - back:.2f} | {100 * (wall - back) / back:.0f}% |")
        if best is None or wall < best[1]:
            best = (threads, wall)
        limit = max(0.2 * back, 1.0)
        print(f"|   | target: adds at most {limit:.2f} s | | {'met' if wall - back <= limit else 'NOT met'} | |")
    print(f"\nfastest here: {best[0]} backend thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

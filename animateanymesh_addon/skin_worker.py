"""The skinning solve in its own process: `python skin_worker.py JOB.npz SKIN.npz`.

Blender runs it with its own Python (the extension's bundled solver on the path) so that the
iterations never hold Blender's interface, and so Cancel is simply ending the process. It prints
one JSON object a line on stdout and nothing else there:

    {"type": "progress", "done": 3, "total": 23, "rmse": 0.0012}
    {"type": "error", "message": "..."}                             then exit status 2
    {"type": "done", "bones": 16}                                   after SKIN.npz is in place

JOB.npz holds rest (N, 3), frames (T, N, 3), poly_index and poly_count (flat corner indices and
corners per polygon), bones, iterations and influences. SKIN.npz is skinning.Skin.save().
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import skinning  # noqa: E402  (this folder, imported without the add-on package: no bpy here)


def say(**message) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def polygons(index: np.ndarray, count: np.ndarray) -> list[np.ndarray]:
    return np.split(index, np.cumsum(count)[:-1]) if len(count) else []


def main(job_path: str, out_path: str) -> int:
    try:
        with np.load(job_path) as job:
            skin = skinning.solve(job["rest"], job["frames"],
                                  polygons(job["poly_index"], job["poly_count"]),
                                  int(job["bones"]), iterations=int(job["iterations"]),
                                  influences=int(job["influences"]),
                                  progress=lambda done, total, rmse: say(
                                      type="progress", done=done, total=total, rmse=rmse))
        tmp = out_path + ".tmp.npz"
        skin.save(tmp)
        os.replace(tmp, out_path)
    except skinning.SkinningError as exc:
        say(type="error", message=str(exc))
        return 2
    except MemoryError:
        say(type="error", message="the skinning solve ran out of memory. Fix: use fewer bones or "
                                  "fewer frames, or decimate the mesh.")
        return 2
    say(type="done", bones=skin.num_bones)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""One skinning solve in a child process (skin_worker.py), moved along by poll().

The same shape as a backend job (controller.AnimateRun polls both): state, fraction, text,
cancel(). The child is Blender's own Python with Blender's module path, so it finds numpy and
the solver wheel the extension installed; Cancel ends it at once.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from . import skinning

WORKER = Path(__file__).with_name("skin_worker.py")


class SkinJobError(Exception):
    pass


def child_environment() -> dict:
    env = dict(os.environ)
    # The child sees what this Python sees: Blender's bundled modules and the extensions'
    # site-packages (where Blender installed the solver's wheel).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["PYTHONNOUSERSITE"] = "1"
    # Dem Bones runs on OpenMP, whose threads spin while they wait: on a machine busy with
    # something else two of them once took 67 s where one took 2 s (benchmarks/armature_bench.py).
    # Waiting threads sleep instead, as the backend's do (backend_client).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


class SkinJob:
    """Solve `frames` (T, N, 3) of a mesh (rest (N, 3), polygons as flat corner indices and
    corner counts) into `bones` bones, in a child process."""

    def __init__(self, rest, frames, poly_index, poly_count, bones: int, *,
                 iterations: int = skinning.DEFAULT_ITERATIONS,
                 influences: int = skinning.MAX_INFLUENCES, label: str = ""):
        rest = np.asarray(rest, dtype=np.float64)
        frames = np.asarray(frames, dtype=np.float64)
        skinning.check_animation(rest, frames)   # refuse in this process, before any child
        skinning.check_bones(bones, len(rest))
        self.label = label
        self.state = "pending"
        self.error = ""
        self.done, self.total = 0, 1
        self.skin: skinning.Skin | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="aam-skin-")
        self._job = Path(self._tmp.name) / "job.npz"
        self._out = Path(self._tmp.name) / "skin.npz"
        np.savez(self._job, rest=rest, frames=frames,
                 poly_index=np.asarray(poly_index, dtype=np.int64),
                 poly_count=np.asarray(poly_count, dtype=np.int64), bones=np.int64(bones),
                 iterations=np.int64(iterations), influences=np.int64(influences))
        self._lines: queue.Queue = queue.Queue()
        self._proc = None
        self._stderr = ""

    # ------------------------------------------------------------------ running

    def start(self) -> "SkinJob":
        self._proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self._job), str(self._out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=child_environment())
        self.state = "running"
        threading.Thread(target=self._read, args=(self._proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self._proc.stderr, False), daemon=True).start()
        return self

    def _read(self, stream, is_stdout: bool) -> None:
        for line in stream:
            if is_stdout:
                self._lines.put(line)
            else:
                self._stderr = (self._stderr + line)[-4000:]

    @property
    def result(self) -> skinning.Skin | None:
        """What a write needs (targets.Target.solve_job): the solved skin, once done."""
        return self.skin

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def fraction(self) -> float:
        return 1.0 if self.state == "done" else min(self.done / max(self.total, 1), 1.0)

    @property
    def text(self) -> str:
        where = f" {self.label}" if self.label else ""
        if self.state == "running":
            return f"Skinning{where}: iteration {self.done}/{self.total}"
        if self.state == "error":
            return f"Failed: {self.error}"
        return self.state.capitalize()

    def poll(self) -> bool:
        """Read what the child said; True once finished."""
        if self.finished or self._proc is None:
            return self.finished
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            self._message(line)
        if self._proc.poll() is None or self.finished:
            return self.finished
        # the child ended: drain the rest of its output, then judge
        self._proc.wait()
        while not self._lines.empty():
            self._message(self._lines.get_nowait())
        if not self.finished:
            tail = self._stderr.strip().splitlines()[-1:] or [f"exit status {self._proc.returncode}"]
            self._fail(f"the skinning solver stopped unexpectedly ({tail[0]}).")
        return True

    def _message(self, line: str) -> None:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            return   # a stray print of a library: not ours
        if msg.get("type") == "progress":
            self.done, self.total = int(msg["done"]), int(msg["total"])
        elif msg.get("type") == "error":
            self._fail(str(msg.get("message", "the skinning solver failed.")))
        elif msg.get("type") == "done":
            try:
                self.skin = skinning.Skin.load(self._out)
            except (OSError, KeyError, ValueError) as exc:
                self._fail(f"the skinning solver's result could not be read ({exc}).")
                return
            self.state = "done"
            self._cleanup()

    def _fail(self, message: str) -> None:
        self.state = "error"
        self.error = message
        self._cleanup()

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if not self.finished:
            self.state = "cancelled"
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._tmp.cleanup()

    def run_blocking(self, on_progress=None, interval: float = 0.05) -> skinning.Skin:
        """Headless: solve and wait (Ctrl-C cancels). Raises SkinJobError on failure."""
        import time

        if self.state == "pending":
            self.start()
        try:
            while not self.poll():
                if on_progress is not None:
                    on_progress(self)
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel()
        if self.state != "done":
            raise SkinJobError(self.error or f"the skinning solve was {self.state}.")
        return self.skin

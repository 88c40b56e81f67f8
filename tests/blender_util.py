"""Run real-Blender test code (the bpy wheel) in a fresh Python process and get its result back.

Why a process per scenario: bpy is Blender itself loaded as a module. It cannot be reset to a
clean state completely inside one process, and loading it next to torch (which the backend tests
import into the same pytest process) risks clashing native libraries. A fresh interpreter with
bpy starts in about 0.7 s here, so the isolation is cheap.

A scenario is a plain function in an importable test module (tests/ and tests/blender/ are on
the child's path); it runs inside Blender, asserts what it can there (failures come back with
the child's traceback) and returns JSON-serialisable data for the parent test to check as well.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# where the scenario modules live (run by module name in the child)
SCENARIO_DIRS = (TESTS, TESTS / "blender")

_RUNNER = r"""
import importlib, json, sys, traceback
module, function, kwargs_json, out_path = sys.argv[1:5]
try:
    import bpy  # Blender first, before anything else loads native libraries
    value = getattr(importlib.import_module(module), function)(**json.loads(kwargs_json))
    result = {"ok": True, "value": value}
except BaseException:
    result = {"ok": False, "traceback": traceback.format_exc()}
with open(out_path, "w", encoding="utf-8") as fh:
    json.dump(result, fh)
"""


def have_bpy() -> bool:
    return importlib.util.find_spec("bpy") is not None


requires_bpy = pytest.mark.skipif(not have_bpy(), reason="the bpy wheel (real Blender) is not "
                                                         "installed: pip install -r requirements-dev.txt")


class BlenderScenarioError(AssertionError):
    pass


def run_in_blender(module: str, function: str, *, timeout: float = 300,
                   env: dict | None = None, **kwargs):
    """Call `module.function(**kwargs)` in a new Python process with bpy; return its result.

    kwargs and the result travel as JSON. Raises BlenderScenarioError with the child's traceback
    (and the tail of Blender's console output) when the scenario fails, crashes or times out.
    """
    __tracebackhide__ = True  # pytest: show the child's traceback, not this wrapper
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [str(d) for d in SCENARIO_DIRS] + ([child_env["PYTHONPATH"]] if child_env.get("PYTHONPATH") else []))
    child_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    with tempfile.TemporaryDirectory(prefix="aam-blender-") as tmp:
        # A private Blender user folder: no preferences or extensions of the developer's own
        # Blender leak in, and nothing the test installs leaks out.
        child_env["BLENDER_USER_RESOURCES"] = str(Path(tmp) / "blender_user")
        if env:
            child_env.update(env)
        out_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-c", _RUNNER, module, function, json.dumps(kwargs), str(out_path)]
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=child_env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            tail = (exc.stdout or b"")[-3000:]
            raise BlenderScenarioError(f"{module}.{function} ran past {timeout} s\n{tail!r}") from None
        console = (proc.stdout + proc.stderr)[-4000:]
        if not out_path.is_file():
            raise BlenderScenarioError(f"{module}.{function} died without a result (exit code "
                                       f"{proc.returncode}); Blender said:\n{console}")
        result = json.loads(out_path.read_text(encoding="utf-8"))
    if not result["ok"]:
        raise BlenderScenarioError(f"{module}.{function} failed inside Blender:\n"
                                   f"{result['traceback']}\n--- Blender console (tail) ---\n{console}")
    return result["value"]


def load_build():
    """build.py (a script at the repository root, not a package) as a module."""
    spec = importlib.util.spec_from_file_location("aam_build", REPO / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_extension_zip(out_dir) -> Path:
    """Run build.py into `out_dir` for this machine's platform only (its zip validated) and
    return that zip: the one Blender here installs (it refuses a zip for another platform)."""
    build = load_build()
    proc = subprocess.run([sys.executable, str(REPO / "build.py"), "--out-dir", str(out_dir),
                           "--only-platform", build.this_platform()],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return build.built_zip(Path(out_dir))


# ------------------------------------------------------------------------------ inside Blender
# The helpers below run in the child (they import bpy lazily).

def evaluated_positions(obj, time: float, world: bool = False):
    """Vertex positions (N, 3) of `obj` as the depsgraph evaluates it at timeline `time`
    (subframes allowed), modifiers included; object space unless world=True."""
    import math

    import bpy
    import numpy as np

    scene = bpy.context.scene
    whole = math.floor(time)
    scene.frame_set(int(whole), subframe=float(time - whole))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        ev.to_mesh_clear()
    co = co.reshape(-1, 3).astype(np.float64)
    if world:
        m = np.array(ev.matrix_world, dtype=np.float64)
        co = co @ m[:3, :3].T + m[:3, 3]
    return co


def point_set_distance(a, b) -> float:
    """Symmetric nearest-neighbour (Hausdorff) distance between two point sets.

    Exporters reorder and split vertices (glTF at seams and flat-shaded edges), so a vertex-by-
    vertex comparison is meaningless; the sets of positions must still coincide.
    """
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return 0.0 if len(a) == len(b) else float("inf")
    d_ab = np.full(len(a), np.inf)
    d_ba = np.full(len(b), np.inf)
    for start in range(0, len(a), 2048):
        block = a[start:start + 2048]
        d = np.sqrt(((block[:, None, :] - b[None, :, :]) ** 2).sum(-1))
        d_ab[start:start + 2048] = d.min(1)
        d_ba = np.minimum(d_ba, d.min(0))
    return float(max(d_ab.max(), d_ba.max()))


GLTF_VALIDATOR = REPO / "tools" / "gltf_validator"


def khronos_gltf_report(path) -> dict:
    """The Khronos glTF validator's report of a .glb / .gltf (scripts/setup.sh installs it with
    npm); the test is skipped where node or the validator is missing."""
    import shutil

    node = shutil.which("node")
    if node is None or not (GLTF_VALIDATOR / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("the Khronos glTF validator is not installed (scripts/setup.sh installs it "
                    "with npm)")
    proc = subprocess.run([node, str(GLTF_VALIDATOR / "validate.js"), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)

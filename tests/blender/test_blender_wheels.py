"""The Bake to Armature solver (py-dem-bones) ships inside the extension: one zip per platform,
each with only its platform's wheel, and Blender's own installer puts the wheel where the add-on
imports it, offline.

What Blender 5.0's installer does with a bundled wheel (read in bl_pkg and
_bpy_internal/extensions/wheel_manager.py, and checked below): it runs blender_ext.py
`install-files` (its own extension CLI, with Blender's Python) to unpack the zip into the
repository folder; then, for the extensions that are enabled, it picks the wheels of the
manifest that fit this system and extracts them itself with zipfile into
`<user>/extensions/.local/lib/python3.11/site-packages`. No pip, no index, no network.

One difference from an installed Blender: here Blender's Python is the development venv, which
has its own py-dem-bones (for the backend's unit tests). Right after the first install Blender
appends that site-packages to the end of sys.path (on later starts it puts it in front of
Python's own site-packages), so in the install session the venv's copy would win. The install
scenario therefore hides the venv's copy, as an installed Blender's Python (which has none) is;
the restart scenario then shows Blender's own path order picking the extension's copy.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from blender_util import REPO, load_build, requires_bpy, run_in_blender
from tiny_wheel import NO_NETWORK

MODULE = "test_blender_wheels"
pytestmark = [pytest.mark.blender, requires_bpy]
PACKAGE = "bl_ext.user_default.animateanymesh"
WHEELS = {
    "linux-x64": "py_dem_bones-0.13.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "windows-x64": "py_dem_bones-0.13.1-cp311-cp311-win_amd64.whl",
    "macos-arm64": "py_dem_bones-0.13.1-cp311-cp311-macosx_11_0_arm64.whl",
    "macos-x64": "py_dem_bones-0.13.1-cp311-cp311-macosx_10_9_x86_64.whl",
}
# nothing answers there: a download, by Blender or a pip it might start, fails at once
OFFLINE = {**NO_NETWORK, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": ""}


# ============================================================================ inside Blender

def _site_packages():
    import bpy

    return (Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
            / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")


def _tiny_solve() -> dict:
    """Two rigid halves of a 6 x 3 grid, moved apart over 4 frames: two bones, one per half."""
    import numpy as np
    import py_dem_bones

    nx, ny, frames = 6, 3, 4
    rest = np.array([(x, y, 0.0) for y in range(ny) for x in range(nx)], float)
    right = rest[:, 0] >= nx / 2
    poses = []
    for f in range(frames):
        p = rest.copy()
        p[right, 2] += 0.3 * f
        p[~right, 1] += 0.2 * f
        poses.append(p)
    db = py_dem_bones.DemBones()
    db.nB, db.nIters, db.nInitIters, db.nTransIters, db.nWeightsIters = 2, 10, 5, 3, 3
    db.nV, db.nF, db.nS = len(rest), frames, 1
    db.fStart = np.array([0, frames], dtype=np.int32)
    db.subjectID = np.zeros(frames, dtype=np.int32)
    db.fv = [[y * nx + x, y * nx + x + 1, (y + 1) * nx + x + 1, (y + 1) * nx + x]
             for y in range(ny - 1) for x in range(nx - 1)]
    db.u = rest.T.copy()                                   # (3 * subjects, vertices)
    db.v = np.concatenate([p.T for p in poses], axis=0)    # (3 * frames, vertices)
    db.compute()
    weights = db.get_weights()
    bone = weights.argmax(0)
    return {"shape": list(weights.shape), "rmse": float(db.rmse()),
            "halves_split": bool(len(set(bone[right])) == 1 and len(set(bone[~right])) == 1
                                 and bone[right][0] != bone[~right][0]),
            "rows_sum_to_one": bool(np.allclose(weights.sum(0), 1.0))}


def scenario_install_offline(zip_path: str, foreign_zip: str) -> dict:
    """Install a zip made for another platform (refused), then this machine's zip, with every
    socket refused and every process Blender starts recorded; then import and run the solver."""
    import contextlib
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import io
    import os
    import site
    import socket

    import bpy

    started, connects = [], []
    popen = subprocess.Popen

    class RecordingPopen(popen):
        def __init__(self, args, *a, **k):
            started.append([str(x) for x in args] if not isinstance(args, str) else [args])
            super().__init__(args, *a, **k)

    def no_network(_sock, address, *a, **k):
        connects.append(repr(address))
        raise OSError("network unreachable (test)")

    subprocess.Popen = RecordingPopen
    socket.socket.connect = no_network

    own = {os.path.realpath(p) for p in site.getsitepackages()}
    venv_copy = importlib.util.find_spec("py_dem_bones")

    class WithoutOwnCopy(importlib.abc.MetaPathFinder):
        """py_dem_bones only from outside Python's own site-packages: an installed Blender's
        Python has none of its own."""
        def find_spec(self, name, path=None, target=None):
            if name != "py_dem_bones":
                return None
            spec = importlib.machinery.PathFinder.find_spec(
                name, [p for p in sys.path if os.path.realpath(p or ".") not in own])
            if spec is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return spec

    sys.meta_path.insert(0, WithoutOwnCopy())
    try:
        import py_dem_bones  # noqa: F401
        before = "importable"
    except ModuleNotFoundError:
        before = "missing"

    repo_dir = Path(bpy.utils.user_resource("EXTENSIONS", path="user_default"))
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        foreign = bpy.ops.extensions.package_install_files(filepath=foreign_zip, repo="user_default",
                                                           enable_on_install=True)
    foreign_left = sorted(p.name for p in repo_dir.iterdir()) if repo_dir.is_dir() else []
    foreign_site = _site_packages().is_dir()

    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}, result
    import py_dem_bones

    site_packages = _site_packages()
    solve = _tiny_solve()
    bpy.ops.wm.save_userpref()  # the add-on stays enabled at the next start
    return {
        "venv_copy": venv_copy.origin if venv_copy else None, "before": before,
        "foreign": sorted(foreign), "foreign_console": console.getvalue(),
        "foreign_left": foreign_left, "foreign_site_packages": foreign_site,
        "enabled": PACKAGE in bpy.context.preferences.addons.keys(),
        "online_access": bpy.app.online_access,
        "started": started, "connects": connects,
        "site_packages": str(site_packages),
        "installed": sorted(p.name for p in site_packages.iterdir()),
        "extension_wheels": sorted(p.name for p in (repo_dir / "animateanymesh" / "wheels").iterdir()),
        "module": py_dem_bones.__file__, "native": py_dem_bones._py_dem_bones.__file__,
        "version": py_dem_bones.__version__, "solve": solve,
    }


def scenario_after_restart(out_dir: str) -> dict:
    """A new Blender on the same user folder, nothing hidden: Blender's own sys.path order.
    Then the installed extension bakes an animation to an armature and exports it."""
    import site

    import bpy

    bpy.ops.wm.read_userpref()  # Blender does this at start; the bpy module starts on factory ones
    import py_dem_bones

    site_packages = str(_site_packages())
    own = site.getsitepackages()
    order = [p for p in sys.path if p == site_packages or p in own]

    from test_blender_armature import _artist_animated_tube

    obj = _artist_animated_tube("Theirs")
    for o in bpy.context.view_layer.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    baked_with = bpy.ops.animateanymesh.bake_armature(bones=4)
    baked = bpy.data.objects["Theirs Baked"]
    for o in bpy.context.view_layer.objects:
        o.select_set(o == baked)
    exports = {}
    for fmt, ext in (("FBX", ".fbx"), ("GLB", ".glb")):
        path = str(Path(out_dir) / f"baked{ext}")
        exports[fmt] = [sorted(bpy.ops.animateanymesh.export_animation(filepath=path,
                                                                        file_format=fmt)), path]
    return {"enabled": PACKAGE in bpy.context.preferences.addons.keys(), "order": order,
            "site_packages": site_packages, "module": py_dem_bones.__file__,
            "solve": _tiny_solve(), "baked": sorted(baked_with), "exports": exports,
            "rig_bones": len(bpy.data.objects["Theirs Baked Rig"].data.bones)}


# ============================================================================ tests

@pytest.fixture(scope="module")
def build():
    return load_build()


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """build.py as a release runs it: every platform's zip."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(REPO / "build.py"), "--out-dir", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _manifest(zf: zipfile.ZipFile) -> dict:
    """The zip's manifest as Blender reads it: [build.generated] replaces platforms and wheels."""
    manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    generated = manifest.get("build", {}).get("generated", {})
    return {**manifest, **{k: generated[k] for k in ("platforms", "wheels") if k in generated}}


def test_build_writes_one_validated_zip_per_platform_with_only_its_wheel(dist, build):
    assert sorted(p.name for p in dist.iterdir()) == sorted(
        f"animateanymesh-0.1.0-{platform.replace('-', '_')}.zip" for platform in WHEELS)
    contents = {}
    for platform, wheel in WHEELS.items():
        path = build.built_zip(dist, platform)
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert [n for n in names if n.startswith("wheels/")] == [f"wheels/{wheel}"], platform
            assert zf.read(f"wheels/{wheel}") == (REPO / "wheels" / wheel).read_bytes()
            manifest = _manifest(zf)
        assert manifest["platforms"] == [platform] and manifest["wheels"] == [f"./wheels/{wheel}"]
        assert manifest["id"] == "animateanymesh" and manifest["version"] == "0.1.0"
        contents[platform] = {n for n in names if not n.startswith("wheels/")}
        build.validate(path, None)  # Blender's validator, once more on the zip as it lies here
    first = contents["linux-x64"]
    assert "__init__.py" in first and all(c == first for c in contents.values())


def test_blender_installs_this_machines_zip_offline_and_the_solver_runs(dist, build, tmp_path):
    here = build.this_platform()
    if here not in WHEELS:
        pytest.skip(f"{here}: the extension ships no solver wheel for this platform")
    zip_path = build.built_zip(dist)
    foreign = build.built_zip(dist, "windows-x64" if here != "windows-x64" else "linux-x64")
    user = tmp_path / "blender_user"
    env = {**OFFLINE, "BLENDER_USER_RESOURCES": str(user)}
    r = run_in_blender(MODULE, "scenario_install_offline", zip_path=str(zip_path),
                       foreign_zip=str(foreign), env=env)

    # with the venv's own copy hidden, nothing was importable before the install
    assert r["before"] == "missing", r["before"]
    # a zip for another platform: Blender's installer refuses it and installs nothing
    assert f"This platform ({here}) isn't one of" in r["foreign_console"], r["foreign_console"]
    assert "animateanymesh" not in r["foreign_left"] and not r["foreign_site_packages"]
    # this machine's zip: enabled, and its wheel extracted by Blender itself, with no pip and no
    # connection: the only processes are Blender's own extension CLI unpacking each zip
    assert r["enabled"] and r["connects"] == [], r["connects"]
    unpacked = []
    for command in r["started"]:
        i = command.index("install-files")
        assert command[i - 1].endswith("blender_ext.py") and "pip" not in command, command
        unpacked.append(command[i + 1])
    assert unpacked == [str(foreign), str(zip_path)], r["started"]
    assert r["extension_wheels"] == [WHEELS[here]]
    site_packages = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert r["site_packages"] == str(site_packages)
    assert {"py_dem_bones", "py_dem_bones-0.13.1.dist-info"} <= set(r["installed"]), r["installed"]
    assert r["module"] == str(site_packages / "py_dem_bones" / "__init__.py")
    assert r["native"].startswith(str(site_packages / "py_dem_bones" / "_py_dem_bones."))
    assert r["version"] == "0.13.1"
    assert r["solve"] == {"shape": [2, 18], "rmse": pytest.approx(0.0, abs=1e-6),
                          "halves_split": True, "rows_sum_to_one": True}

    # the next start: Blender puts the extensions' site-packages before Python's own, so the
    # bundled copy wins even over the venv's
    again = run_in_blender(MODULE, "scenario_after_restart", out_dir=str(tmp_path), env=env)
    assert again["enabled"] and again["order"][0] == str(site_packages), again["order"]
    assert again["module"] == r["module"] and again["solve"]["halves_split"]

    # the installed extension bakes (its solver child finds the bundled wheel) and exports the
    # skin; independent readers re-open both files
    assert again["baked"] == ["FINISHED"] and again["rig_bones"] >= 2, again
    assert all(result == ["FINISHED"] for result, _ in again["exports"].values()), again["exports"]
    from test_blender_armature import read_with_ufbx

    from blender_util import khronos_gltf_report

    fbx = read_with_ufbx(again["exports"]["FBX"][1])
    assert fbx["weighted_clusters"] == again["rig_bones"] - 1 and fbx["anim_stacks"] >= 1
    report = khronos_gltf_report(again["exports"]["GLB"][1])
    assert report["issues"]["numErrors"] == 0 and report["info"]["hasSkins"]

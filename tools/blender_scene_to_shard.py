"""Turn animated objects of a Blender scene into training samples (one motion shard, .npz).

Any animation Blender can evaluate becomes data: armatures, shape keys, modifiers, drivers,
physics caches, object transforms and parenting. Each object is evaluated through the dependency
graph at every frame of the range (stepping frame by frame, in order, so simulations advance as
they do on playback), the evaluated mesh's vertex positions are read in WORLD space (so object-level
motion such as a keyed spin or a parent's jump is part of the sample; the backend normalises every
sample by its first frame anyway) and the clip is resampled to T frames by linear interpolation in
time by `backend.data.sample.resample_frames` (first and last frame kept).

Captions, in order of preference: the object's custom property `caption_property` (default
"aam_caption"; several paraphrases separated by "|"), the same property on the armature that deforms
it, then the name of the action animating the object, its armature or its shape keys
("Walk_Cycle.001" -> "walk cycle"). An object with none is exported without captions (usable for the
VAE) and the report says so.

A tool for building training data, not part of the installed extension. It runs inside Blender
(bpy + numpy) with the repository on its path, and writes through the seam's shard writer
(`aam_seam.shards`), the same one the backend's dataset tools use.

Headless use (Blender, or the Python that has the bpy wheel):
    blender -b scene.blend --python tools/blender_scene_to_shard.py -- --out clips.npz
        [--T 16] [--start 1] [--end 120] [--objects Cube,Dog] [--caption-property aam_caption]
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import bpy
import numpy as np

# A tool run by file path: make the repository's packages importable (the seam, the numpy data code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aam_seam.shards import write_shard  # noqa: E402
from backend.data.sample import resample_frames  # noqa: E402

_MESHLIKE = {"MESH", "CURVE", "SURFACE", "META", "FONT"}


class ExportError(Exception):
    """A problem the user can fix (bad frame range, unknown object, nothing to export)."""


# ---------------------------------------------------------------------------------------------
# Pure helpers (numpy only)
# ---------------------------------------------------------------------------------------------


def caption_from_action_name(name: str) -> str:
    """"Walk_Cycle.001" -> "walk cycle"; "Armature|RunFast" -> "run fast"."""
    name = name.split("|")[-1]
    name = re.sub(r"\.\d+$", "", name)
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    words = re.sub(r"[^A-Za-z]+", " ", name).lower().split()
    return " ".join(words)


# ---------------------------------------------------------------------------------------------
# Blender side
# ---------------------------------------------------------------------------------------------


def _rigs(obj):
    """Armature objects deforming `obj` (armature modifiers and an armature parent)."""
    rigs = [m.object for m in obj.modifiers if m.type == "ARMATURE" and m.object is not None]
    if obj.parent is not None and obj.parent.type == "ARMATURE" and obj.parent not in rigs:
        rigs.append(obj.parent)
    return rigs


def _action_name(id_block):
    ad = getattr(id_block, "animation_data", None)
    action = getattr(ad, "action", None) if ad is not None else None
    return action.name if action is not None else None


def captions_for_object(obj, caption_property: str) -> tuple[list[str], str]:
    """(captions, where they came from) for one object; ([], "none") when nothing is set."""
    for holder, label in [(obj, "property")] + [(r, "rig property") for r in _rigs(obj)]:
        value = holder.get(caption_property)
        if isinstance(value, str) and value.strip():
            return [c.strip() for c in re.split(r"[|\n]", value) if c.strip()], label
    sources = [(obj, "action")] + [(r, "rig action") for r in _rigs(obj)]
    keys = getattr(obj.data, "shape_keys", None) if obj.type == "MESH" else None
    if keys is not None:
        sources.append((keys, "shape key action"))
    for holder, label in sources:
        name = _action_name(holder)
        if name:
            caption = caption_from_action_name(name)
            if caption:
                return [caption], label
    return [], "none"


def _resolve_objects(objects, scene):
    if objects is None:
        return [o for o in scene.objects if o.type == "MESH"], True
    found = []
    for item in objects:
        obj = scene.objects.get(item) if isinstance(item, str) else item
        if obj is None:
            raise ExportError(f"object {item!r} is not in scene {scene.name!r}. Fix: pass object "
                              "names from this scene.")
        if obj.type not in _MESHLIKE:
            raise ExportError(f"object {obj.name!r} is a {obj.type}, which has no mesh to export. "
                              "Fix: pass the deformed mesh, not its armature.")
        found.append(obj)
    return found, False


def _read_positions(obj, depsgraph, world: bool):
    ob_eval = obj.evaluated_get(depsgraph)
    mesh = ob_eval.to_mesh()
    try:
        n = len(mesh.vertices)
        co = np.empty(n * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        co = co.reshape(n, 3).astype(np.float64)
        if world:
            m = np.array(ob_eval.matrix_world, dtype=np.float64)
            co = co @ m[:3, :3].T + m[:3, 3]
        mesh.calc_loop_triangles()
        tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
    finally:
        ob_eval.to_mesh_clear()
    return co, tris.reshape(-1, 3)


def export_scene_samples(out_path, objects=None, frame_start=None, frame_end=None, T=16,
                         caption_property="aam_caption", world_space=True) -> list[dict]:
    """Evaluate animated objects of the current scene and write them to one shard at out_path.

    objects: names or objects (None: every mesh object in the scene, keeping only those that
    actually move over the range). frame_start/frame_end: the scene's range by default.
    Returns one report dict per candidate object: name, status ("exported" or "skipped"),
    reason, vertex and face counts, captions and where they came from. Raises ExportError when
    the range is invalid or nothing could be exported.
    """
    scene = bpy.context.scene
    start = scene.frame_start if frame_start is None else int(frame_start)
    end = scene.frame_end if frame_end is None else int(frame_end)
    if end < start:
        raise ExportError(f"frame range {start}..{end} is empty. Fix: frame_end >= frame_start.")
    if int(T) != T or T < 1:
        raise ExportError(f"T={T} must be a positive frame count (e.g. 16).")
    candidates, auto = _resolve_objects(objects, scene)
    original_frame, original_subframe = scene.frame_current, scene.frame_subframe
    positions = {o.name: [] for o in candidates}
    faces, failed = {}, {}
    try:
        for frame in range(start, end + 1):
            scene.frame_set(frame)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            for obj in candidates:
                if obj.name in failed:
                    continue
                try:
                    co, tris = _read_positions(obj, depsgraph, world_space)
                except RuntimeError as exc:
                    failed[obj.name] = f"could not be evaluated ({exc})"
                    continue
                frames = positions[obj.name]
                if frames and len(co) != len(frames[0]):
                    failed[obj.name] = (f"its vertex count changes over time ({len(frames[0])} -> "
                                        f"{len(co)} at frame {frame}); a sample needs fixed topology")
                    continue
                if not frames:
                    faces[obj.name] = tris
                frames.append(co)
    finally:
        scene.frame_set(original_frame, subframe=original_subframe)

    report, records = [], []
    blend = bpy.data.filepath or "(unsaved)"
    for obj in candidates:
        entry = {"object": obj.name, "status": "skipped", "reason": "", "vertices": 0, "faces": 0,
                 "captions": [], "caption_from": "none"}
        report.append(entry)
        if obj.name in failed:
            entry["reason"] = failed[obj.name]
            continue
        clip = np.stack(positions[obj.name])
        if len(clip[0]) == 0:
            entry["reason"] = "its evaluated mesh has no vertices"
            continue
        diag = float(np.linalg.norm(clip[0].max(axis=0) - clip[0].min(axis=0))) or 1.0
        moving = float(np.abs(clip - clip[:1]).max()) > 1e-6 * diag
        if auto and not moving:
            entry["reason"] = f"it does not move between frames {start} and {end}"
            continue
        captions, caption_from = captions_for_object(obj, caption_property)
        entry.update(status="exported", vertices=int(clip.shape[1]), faces=int(len(faces[obj.name])),
                     captions=captions, caption_from=caption_from)
        if not captions:
            entry["reason"] = (f"exported without a caption: set the custom property "
                               f"'{caption_property}' or name the action")
        records.append({
            "frames": resample_frames(clip, int(T)), "faces": faces[obj.name], "captions": captions,
            "source": f"blender:{os.path.basename(blend)}:{obj.name}", "family": None,
            "meta": {"object": obj.name, "blend_file": blend, "frame_start": start,
                     "frame_end": end, "source_frames": int(clip.shape[0]),
                     "space": "world" if world_space else "object", "caption_from": caption_from,
                     "fps": scene.render.fps / scene.render.fps_base},
        })
    if not records:
        reasons = "; ".join(f"{e['object']}: {e['reason']}" for e in report) or "no mesh objects"
        raise ExportError(f"nothing to export ({reasons}). Fix: animate a mesh in the frame range "
                          "or pass its name.")
    write_shard(out_path, records)
    return report


def main(argv=None) -> int:
    import argparse

    argv = sys.argv[sys.argv.index("--") + 1:] if argv is None and "--" in sys.argv else (argv or [])
    parser = argparse.ArgumentParser(prog="blender_scene_to_shard", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="shard file to write (.npz)")
    parser.add_argument("--T", type=int, default=16, help="frames per sample (default 16)")
    parser.add_argument("--start", type=int, default=None)
    parser.add_argument("--end", type=int, default=None)
    parser.add_argument("--objects", default=None, help="comma-separated object names")
    parser.add_argument("--caption-property", default="aam_caption")
    parser.add_argument("--object-space", action="store_true",
                        help="positions in object space (ignores object-level animation)")
    args = parser.parse_args(argv)
    objects = [n for n in args.objects.split(",") if n] if args.objects else None
    try:
        report = export_scene_samples(args.out, objects, args.start, args.end, args.T,
                                      args.caption_property, world_space=not args.object_space)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for e in report:
        print(f"{e['status']:8s} {e['object']}: {e['vertices']} vertices, captions "
              f"{e['captions']} ({e['caption_from']}) {e['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

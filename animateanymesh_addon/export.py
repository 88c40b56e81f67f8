"""Bake animated meshes to FBX (blend shapes or a skin), Alembic (a mesh per frame) or glTF
(morph targets or a skin).

`export_animation` drives Blender's own exporters with the settings an AnimateAnyMesh result
needs and puts the scene back as it found it (selection, frame range, current frame).

Two facts of those exporters shape it:
* FBX and glTF carry shape keys only from the original mesh data: "apply modifiers" evaluates
  the mesh and drops every shape key. So by default modifiers are not applied and a warning
  names the ones left out; with apply_modifiers=True the objects that lose their animation are
  named instead. Alembic always writes the evaluated mesh, modifiers included.
* FBX and glTF carry shape keys and armatures (a skin: the armature goes into the file with the
  mesh, see Target.export_companions); a write-back target they cannot carry (a point cache)
  offers an `export_fallback` that shows them its frames as temporary shape keys
  for the time of the export.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import bpy

from . import blender_writeback as bw
from . import targets
from . import writeback as wb
from .seam import ErrorCode

FORMATS = {".fbx": "FBX", ".abc": "ALEMBIC", ".glb": "GLB", ".gltf": "GLTF"}
FORMAT_EXTENSIONS = {fmt: ext for ext, fmt in FORMATS.items()}
# Modifiers the FBX / glTF exporters do not count as "applied" (they keep shape keys with them).
_HARMLESS_MODIFIERS = {"ARMATURE"}
GLTF_ANIMATION_NAME = "AnimateAnyMesh"


class ExportError(wb.WritebackError):
    code = ErrorCode.EXPORT


def format_for_path(path, file_format: str | None = None) -> str:
    """'FBX' / 'ALEMBIC' / 'GLB' / 'GLTF' from an explicit format or the file's extension."""
    if file_format:
        fmt = str(file_format).upper().lstrip(".")
        fmt = {"ABC": "ALEMBIC", "GLTF_SEPARATE": "GLTF"}.get(fmt, fmt)
        if fmt not in FORMAT_EXTENSIONS:
            raise ExportError(f"unknown export format {file_format!r}; choose one of "
                              f"{sorted(FORMAT_EXTENSIONS)}.")
        return fmt
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ExportError(f"cannot tell the export format from {Path(path).name!r}. Fix: end the "
                          f"file name with one of {', '.join(FORMATS)}.")
    return FORMATS[ext]


def _check_objects(objects, view_layer) -> list:
    objs, seen = [], set()
    for obj in objects:
        if obj is None or obj.type != "MESH":
            raise ExportError(f"only mesh objects can be exported, got "
                              f"{getattr(obj, 'type', obj)!r}. Fix: select mesh objects.")
        if obj.name in seen:
            continue
        if view_layer.objects.get(obj.name) is None:
            raise ExportError(f"'{obj.name}' is not in the current view layer. Fix: link it to a "
                              "collection of this scene.")
        if not obj.visible_get(view_layer=view_layer):
            raise ExportError(f"'{obj.name}' is hidden, and the exporters skip hidden objects. "
                              "Fix: unhide it.")
        seen.add(obj.name)
        objs.append(obj)
    if not objs:
        raise ExportError("nothing to export. Fix: select the animated mesh objects.")
    return objs


def _companions(objects, view_layer) -> list:
    """What the objects' animations need in the file besides them (an armature)."""
    out = []
    for obj in objects:
        target, record = targets.target_of(obj)
        for other in target.export_companions(obj, record) if target is not None else ():
            if other not in out and other not in objects:
                if view_layer.objects.get(other.name) is None or not other.visible_get(
                        view_layer=view_layer):
                    raise ExportError(f"'{other.name}', the armature of '{obj.name}', is hidden or "
                                      "not in this view layer, and the skin needs it. Fix: unhide it.")
                out.append(other)
    return out


def animation_frame_range(objects) -> tuple[int, int] | None:
    """Whole-frame range covering every AnimateAnyMesh animation on `objects` (None if none)."""
    ranges = []
    for obj in objects:
        info = bw.animation_info(obj)
        if info is None:
            continue
        ranges.append(bw.animation_timeline(obj).scene_range(int(info["num_frames"])))
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _active_modifiers(obj) -> list:
    """Modifiers that make an exporter evaluate the mesh (and so drop its shape keys); those a
    write-back target added are its own business (see its export_fallback)."""
    target, record = targets.target_of(obj)
    ours = set(target.owned_modifiers(obj, record)) if target is not None else set()
    return [m for m in obj.modifiers
            if (m.show_viewport or m.show_render) and m.type not in _HARMLESS_MODIFIERS
            and m.name not in ours]


def modifier_warnings(objects, file_format: str, apply_modifiers: bool) -> list[str]:
    """What the FBX / glTF export will do to the modifiers / shape keys of each object."""
    if file_format == "ALEMBIC":
        return []
    label = "FBX" if file_format == "FBX" else "glTF"
    out = []
    for obj in objects:
        mods = _active_modifiers(obj)
        if not mods:
            continue
        kinds = bpy.types.Modifier.bl_rna.properties["type"].enum_items
        names = ", ".join(f"{m.name} ({kinds[m.type].name})" for m in mods)
        animated = bw.animation_info(obj) is not None or obj.data.shape_keys is not None
        if apply_modifiers and animated:
            out.append(f"{label}: applying the modifiers of '{obj.name}' ({names}) drops its "
                       "shape keys, so its animation is not exported. Fix: turn Apply Modifiers "
                       "off, or export Alembic, which bakes modifiers and animation together.")
        elif not apply_modifiers:
            out.append(f"{label}: the modifiers of '{obj.name}' ({names}) are not applied, "
                       "because applying them would drop the shape-key animation. Fix: apply "
                       "them to the mesh before animating, or export Alembic.")
    return out


# ------------------------------------------------------------------------------ scene state

@contextlib.contextmanager
def _selection(view_layer, objects):
    before = [o for o in view_layer.objects if o.select_get(view_layer=view_layer)]
    active = view_layer.objects.active
    try:
        for o in before:
            o.select_set(False, view_layer=view_layer)
        for o in objects:
            o.select_set(True, view_layer=view_layer)
        view_layer.objects.active = objects[0]
        yield
    finally:
        for o in view_layer.objects:
            if o.select_get(view_layer=view_layer):
                o.select_set(False, view_layer=view_layer)
        for o in before:
            if view_layer.objects.get(o.name) is not None:
                o.select_set(True, view_layer=view_layer)
        view_layer.objects.active = active


@contextlib.contextmanager
def _scene_frames(scene, start: int, end: int):
    saved = (scene.frame_start, scene.frame_end, scene.frame_current, scene.frame_subframe)
    try:
        # Set end first when moving the range forward so start never passes end.
        if start > scene.frame_end:
            scene.frame_end, scene.frame_start = end, start
        else:
            scene.frame_start, scene.frame_end = start, end
        yield
    finally:
        scene.frame_start, scene.frame_end = saved[0], saved[1]
        scene.frame_set(saved[2], subframe=saved[3])


@contextlib.contextmanager
def _export_fallbacks(objects, label: str, warnings: list):
    """Each animated object as FBX / glTF can carry it, for the time of the export."""
    with contextlib.ExitStack() as stack:
        for obj in objects:
            target, record = targets.target_of(obj)
            if target is not None:
                stack.enter_context(target.export_fallback(obj, record, label, warnings))
        yield


# ------------------------------------------------------------------------------ exporters

def _export_fbx(path: Path, apply_modifiers: bool):
    return bpy.ops.export_scene.fbx(
        filepath=str(path), use_selection=True, use_mesh_modifiers=apply_modifiers,
        add_leaf_bones=False, bake_anim=True, bake_anim_use_all_bones=False,
        bake_anim_use_nla_strips=False, bake_anim_use_all_actions=False,
        bake_anim_force_startend_keying=True, bake_anim_step=1.0,
        # 0 keeps a key on every frame: the blend-shape weights stay exact at each frame.
        bake_anim_simplify_factor=0.0)


def _export_gltf(path: Path, file_format: str, apply_modifiers: bool):
    return bpy.ops.export_scene.gltf(
        filepath=str(path), export_format="GLB" if file_format == "GLB" else "GLTF_SEPARATE",
        use_selection=True, export_apply=apply_modifiers, export_animations=True,
        # One glTF animation holding every object's morph weights, so engines play them together.
        export_animation_mode="ACTIVE_ACTIONS",
        export_nla_strips_merged_animation_name=GLTF_ANIMATION_NAME,
        export_frame_range=True, export_force_sampling=True, export_morph=True,
        export_morph_animation=True, export_anim_slide_to_zero=False)


def _export_alembic(path: Path, start: int, end: int):
    return bpy.ops.wm.alembic_export(
        filepath=str(path), start=start, end=end, selected=True, uvs=True, normals=True,
        # A bake of what renders, subdivision included, rather than the editable cage.
        apply_subdiv=True, evaluation_mode="RENDER", export_hair=False, export_particles=False)


def export_animation(objects, path, file_format: str | None = None, *,
                     apply_modifiers: bool = False,
                     frame_range: tuple[int, int] | None = None) -> list[str]:
    """Export `objects` with their animation to `path`; returns warnings for the user.

    file_format: 'FBX', 'ALEMBIC', 'GLB' or 'GLTF' (default: from the extension). The frame
    range defaults to the span of the objects' AnimateAnyMesh animations (the scene's range when
    none carries one). apply_modifiers applies to FBX / glTF (see the module notes).
    """
    context = bpy.context
    scene, view_layer = context.scene, context.view_layer
    fmt = format_for_path(path, file_format)
    path = Path(bpy.path.abspath(str(path)))
    if path.suffix.lower() not in {ext for ext, f in FORMATS.items() if f == fmt}:
        path = path.with_suffix(FORMAT_EXTENSIONS[fmt])
    if not path.parent.is_dir():
        raise ExportError(f"the folder {path.parent} does not exist. Fix: create it or choose "
                          "another output path.")
    view_layer.update()  # syncs view_layer.objects with objects linked since the last update
    objs = _check_objects(objects, view_layer)
    warnings: list[str] = []
    if frame_range is None:
        frame_range = animation_frame_range(objs)
        if frame_range is None:
            frame_range = (scene.frame_start, scene.frame_end)
            warnings.append("none of the objects carries an AnimateAnyMesh animation; exported "
                            f"the scene range {frame_range[0]}-{frame_range[1]}.")
    start, end = int(frame_range[0]), int(frame_range[1])
    if end < start:
        raise ExportError(f"frame range {start}-{end} ends before it starts.")
    missing = [o.name for o in objs if bw.animation_info(o) is None]
    if missing and len(missing) < len(objs):
        warnings.append(f"not animated by AnimateAnyMesh: {', '.join(missing)} (exported as they are).")

    with _staging(path) as staged:
        try:
            with _selection(view_layer, objs + _companions(objs, view_layer)), \
                    _scene_frames(scene, start, end):
                if fmt == "ALEMBIC":
                    result = _export_alembic(staged, start, end)
                else:
                    warnings += modifier_warnings(objs, fmt, apply_modifiers)
                    with _export_fallbacks(objs, "FBX" if fmt == "FBX" else "glTF", warnings):
                        if fmt == "FBX":
                            result = _export_fbx(staged, apply_modifiers)
                        else:
                            result = _export_gltf(staged, fmt, apply_modifiers)
        except RuntimeError as exc:  # bpy.ops turns an exporter's error report into RuntimeError
            raise ExportError(f"the {fmt} exporter failed: {exc}") from None
        if "FINISHED" not in result or not staged.is_file():
            raise ExportError(f"the {fmt} exporter did not write {path} (result {sorted(result)}); "
                              "see the system console for its message.")
    return warnings


@contextlib.contextmanager
def _staging(path: Path):
    """The exporter writes into a hidden folder beside `path`, under the final file names (a
    .gltf names its .bin); only a finished export is moved into place, the main file last, so a
    failed or cancelled export leaves an earlier file at `path` whole."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise ExportError(f"cannot write in {path.parent} ({exc.strerror or exc}). Fix: choose a "
                          "writable folder.") from None
    try:
        yield staging / path.name
        main = staging / path.name
        for part in sorted(staging.iterdir(), key=lambda p: p == main):
            os.replace(part, path.parent / part.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------ operator

class ANIMATEANYMESH_OT_export_animation(bpy.types.Operator):
    """Bake the selected animated meshes to FBX (blend shapes), Alembic or glTF (morph targets)"""

    bl_idname = "animateanymesh.export_animation"
    bl_label = "Bake / Export Animation"
    bl_options = {"REGISTER"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    file_format: bpy.props.EnumProperty(
        name="Format",
        items=[("FBX", "FBX (.fbx)", "Shape-key animation as blend shapes"),
               ("ALEMBIC", "Alembic (.abc)", "The evaluated mesh of every frame, modifiers applied"),
               ("GLB", "glTF Binary (.glb)", "Morph targets and their animation, one file"),
               ("GLTF", "glTF Separate (.gltf)", "Morph targets and their animation, .gltf + .bin")],
        default="FBX")
    apply_modifiers: bpy.props.BoolProperty(
        name="Apply Modifiers",
        description="FBX / glTF: apply modifiers. This drops shape keys, and with them the animation",
        default=False)
    filter_glob: bpy.props.StringProperty(default="*.fbx;*.abc;*.glb;*.gltf", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return any(o.type == "MESH" for o in context.selected_objects)

    def _with_extension(self, filepath: str) -> str:
        ext = FORMAT_EXTENSIONS[self.file_format]
        return str(Path(filepath).with_suffix(ext)) if filepath else filepath

    def check(self, context):
        fixed = self._with_extension(self.filepath)
        if fixed != self.filepath:
            self.filepath = fixed
            return True
        return False

    def invoke(self, context, event):
        if not self.filepath:
            stem = Path(bpy.data.filepath).stem if bpy.data.filepath else "animation"
            self.filepath = self._with_extension(stem + ".fbx")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        objects = [o for o in context.selected_objects if o.type == "MESH"]
        try:
            warnings = export_animation(objects, self._with_extension(self.filepath),
                                        self.file_format, apply_modifiers=self.apply_modifiers)
        except wb.WritebackError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for message in warnings:
            self.report({"WARNING"}, message)
        self.report({"INFO"}, f"Exported {len(objects)} object(s) to {self.filepath}")
        return {"FINISHED"}


CLASSES = (ANIMATEANYMESH_OT_export_animation,)

__all__ = ["CLASSES", "ExportError", "FORMATS", "animation_frame_range", "export_animation",
           "format_for_path", "modifier_warnings"]

"""3D View > Sidebar > AnimateAnyMesh: the prompt and its settings, Animate with its progress,
the batch queue, and bake / export."""

import textwrap

import bpy

from . import blender_writeback as bw
from . import session, targets, variations
from .writeback import WritebackError

STATUS_ICONS = {"queued": "TIME", "running": "PLAY", "done": "CHECKMARK", "failed": "ERROR",
                "cancelled": "CANCEL"}


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 44) -> None:
    """A long message as several labels: Blender's labels do not wrap."""
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


def _progress(layout, run) -> None:
    row = layout.row(align=True)
    if hasattr(row, "progress"):  # Blender 4.0+
        row.progress(factor=run.fraction, type="BAR", text=run.text)
    else:
        row.label(text=f"{run.text} ({run.fraction * 100:.0f}%)")
    row.operator("animateanymesh.cancel", text="", icon="CANCEL")


def _animation_of(obj):
    """(target or None, record or None) of the active object; a record written by a target this
    version does not have still shows, instead of an error on every redraw."""
    if obj is None or obj.type != "MESH":
        return None, None
    try:
        return targets.target_of(obj)
    except WritebackError:
        return None, bw.animation_info(obj)


class ANIMATEANYMESH_UL_chain(bpy.types.UIList):
    """The prompts that follow the main prompt, one segment each, edited in place."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0,
                  flt_flag=0):
        row = layout.row(align=True)
        row.label(text=f"{index + 2}.")
        row.prop(item, "prompt", text="", emboss=False)


def _chain(layout, s) -> None:
    col = layout.column(align=True)
    col.label(text="Then")
    row = col.row()
    row.template_list("ANIMATEANYMESH_UL_chain", "", s, "chain", s, "chain_index", rows=2)
    buttons = row.column(align=True)
    buttons.operator("animateanymesh.chain_add", text="", icon="ADD")
    buttons.operator("animateanymesh.chain_remove", text="", icon="REMOVE")


def _variation_box(layout, obj) -> None:
    box = layout.box()
    box.label(text=f"Variation: {variations.describe(obj)}", icon="DUPLICATE")
    row = box.row(align=True)
    row.operator("animateanymesh.keep_variation", icon="CHECKMARK")
    row.operator("animateanymesh.discard_variations", icon="X")


class VIEW3D_PT_animateanymesh(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "AnimateAnyMesh"
    bl_label = "AnimateAnyMesh"

    def draw(self, context):
        layout = self.layout
        s = context.scene.animateanymesh
        layout.prop(s, "prompt", text="")
        _chain(layout, s)

        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "model")
        if s.model == "DIRECTORY":
            col.prop(s, "model_dir")
        row = col.row(align=True)
        row.prop(s, "seed")
        row.operator("animateanymesh.new_seed", text="", icon="FILE_REFRESH")
        row = col.row()
        row.active = not (s.steps or s.solver.strip())  # set, they replace the preset's schedule
        row.prop(s, "quality")
        col.prop(s, "guidance")
        col.prop(s, "steps")
        col.prop(s, "solver")
        col.prop(s, "strength")
        col.prop(s, "num_traj")
        col.prop(s, "device")

        col.separator()
        col.prop(s, "repeat")
        col.prop(s, "loop")
        col.prop(s, "keep_shape")
        obj = context.active_object
        if obj is not None and obj.type == "MESH":
            col.prop_search(s, "mask_group", obj, "vertex_groups", text="Mask")
        else:
            col.prop(s, "mask_group")
        if s.mask_group:
            col.prop(s, "mask_falloff")
        col.prop(s, "variations")

        col.separator()
        col.prop(s, "length")
        if s.length == "FRAMES":
            col.prop(s, "length_frames")
        elif s.length == "SECONDS":
            col.prop(s, "length_seconds")
        col.prop(s, "frame_start")
        col.prop(s, "timing")
        if s.timing == "RATE":
            col.prop(s, "frame_rate")
        else:
            col.prop(s, "frame_step")
        col.prop(s, "mode")
        if s.mode == "ARMATURE":
            col.prop(s, "bones")
        col.prop(s, "keep_rest")
        col.prop(s, "set_scene_range")
        meshes = [o for o in context.selected_objects if o.type == "MESH"]
        if len(meshes) > 1:
            col.prop(s, "together")

        layout.separator()
        run = session.active_run()
        if run is not None and run.kind == "animate":
            _progress(layout, run)
        else:
            label = f"Animate {len(meshes)} Meshes" if len(meshes) > 1 else "Animate"
            layout.operator("animateanymesh.animate", text=label, icon="PLAY")
        row = layout.row(align=True)
        row.operator("animateanymesh.remove_animation", icon="X")
        row.operator("animateanymesh.release_memory", icon="TRASH")

        if variations.is_copy(obj):
            _variation_box(layout, obj)
        target, info = _animation_of(obj)
        if info is not None:
            kind = target.summary if target is not None else f"'{info.get('mode')}' (unknown here)"
            layout.label(text=f"{obj.name}: {info.get('num_frames')} frames as {kind}",
                         icon="SHAPEKEY_DATA")
            for warning in str(info.get("warnings", "")).splitlines():
                _wrapped(layout.column(align=True), warning, icon="ERROR")


class VIEW3D_PT_animateanymesh_batch(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "AnimateAnyMesh"
    bl_label = "Batch"
    bl_parent_id = "VIEW3D_PT_animateanymesh"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.animateanymesh
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "batch_collection")
        col.prop(s, "batch_prompt_property")
        col.prop(s, "batch_attempts")
        settings = session.backend_settings()
        if settings.batch_runner == "RAY":
            where = settings.ray_address.strip() or "started on this machine"
            layout.label(text=f"Runs on the Ray cluster: {where} (Preferences)", icon="NETWORK_DRIVE")

        run = session.active_run()
        queue = session.load_queue()
        if run is not None and run.kind == "batch":
            _progress(layout, run)
        else:
            row = layout.row(align=True)
            row.operator("animateanymesh.animate_collection", icon="OUTLINER_COLLECTION")
            if queue is not None and queue.next_queued() is not None:
                row.operator("animateanymesh.animate_collection", text="Resume",
                             icon="PLAY").resume = True
        if queue is None or not queue.items:
            return
        counts = queue.counts()
        row = layout.row()
        row.prop(s, "show_queue", icon="TRIA_DOWN" if s.show_queue else "TRIA_RIGHT", emboss=False,
                 text=f"Queue: {counts['done']} done, {counts['failed']} failed, "
                      f"{counts['queued'] + counts['running']} to go")
        if s.show_queue:
            box = layout.box()
            for item in queue.items:
                row = box.row()
                row.label(text=item.object_name, icon=STATUS_ICONS.get(item.status, "DOT"))
                row.label(text=item.status + (f" ({item.attempts})" if item.attempts > 1 else ""))
                if item.error and item.status != "done":
                    sub = box.row()
                    sub.scale_y = 0.7
                    sub.label(text="    " + item.error[:140])
        row = layout.row(align=True)
        row.operator("animateanymesh.batch_cancel_all", icon="CANCEL")
        row.operator("animateanymesh.batch_retry_failed", icon="FILE_REFRESH")
        row.operator("animateanymesh.batch_clear", icon="TRASH")


class VIEW3D_PT_animateanymesh_export(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "AnimateAnyMesh"
    bl_label = "Bake / Export"
    bl_parent_id = "VIEW3D_PT_animateanymesh"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.animateanymesh
        box = layout.box()
        box.label(text="Bake to Armature", icon="ARMATURE_DATA")
        col = box.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "bones")
        col.prop(s, "bake_keep_vertex_animation")
        run = session.active_run()
        if run is not None and run.kind == "bake":
            _progress(box, run)
        else:
            box.operator("animateanymesh.bake_armature", icon="ARMATURE_DATA")
        col = layout.column(align=True)
        for fmt, text in (("FBX", "FBX (blend shapes / skin)"), ("ALEMBIC", "Alembic"),
                          ("GLB", "glTF Binary (morph targets / skin)")):
            col.operator("animateanymesh.export_animation", text=text,
                         icon="EXPORT").file_format = fmt


CLASSES = (ANIMATEANYMESH_UL_chain, VIEW3D_PT_animateanymesh, VIEW3D_PT_animateanymesh_batch,
           VIEW3D_PT_animateanymesh_export)

"""The panel's settings, stored on the scene (`scene.animateanymesh`) so they are saved with the
.blend and every scene keeps its own prompt and timing."""

import bpy

from . import batch, session, skinning, targets
from .seam import limits

MODEL_ITEMS = [
    ("PREFERENCES", "Preferences", "The model chosen in the add-on preferences"),
    ("DEFAULT", "Embedded Default", "The small model shipped with the add-on (offline)"),
    ("OFFICIAL", "Official", "The official AnimateAnyMesh weights (download them in the preferences)"),
    ("DIRECTORY", "Directory", "A model folder (config.json + weights), e.g. one you imported"),
]
DEVICE_ITEMS = [
    ("PREFERENCES", "Preferences", "The device chosen in the add-on preferences"),
    ("AUTO", "Auto", "The GPU when there is one, else the CPU"),
    ("CPU", "CPU", "Always the CPU (slow but needs no GPU memory)"),
    ("CUDA", "CUDA GPU", "An NVIDIA GPU"),
]
LENGTH_ITEMS = [
    ("MODEL", "Model's", "The model's own clip (16 frames)"),
    ("FRAMES", "Frames", "Retime the clip to this many frames (smooth in velocity)"),
    ("SECONDS", "Seconds", "Retime the clip to last this long at the scene's frame rate"),
]
TIMING_ITEMS = [
    ("STEP", "Frame Step", "Scene frames between model frames"),
    ("RATE", "Frame Rate", "Frames per second the clip plays at, in the scene's frame rate"),
]
MAX_SEED = limits.MAX_SEED


def solver_search(_self, _context, _edit_text):
    """The solvers the backend offers (its Ready message), for the Solver field's drop-down."""
    return [(s["name"], s.get("description", "")) for s in session.known_solvers()]


def enum_items(table: dict) -> list[tuple[str, str, str]]:
    """Enum items for a {name: description} table of aam_seam.limits (NAME, Name, Description)."""
    return [(name.upper(), name.capitalize(), description[:1].upper() + description[1:])
            for name, description in table.items()]


# Quality: the presets the request knows (aam_seam.limits lists them; nothing here names one)
QUALITY_ITEMS = enum_items(limits.QUALITY_PRESETS)
QUALITY_DESCRIPTION = ("How much sampling a take gets: fewer flow evaluations are faster, more "
                       "are closer to the model's own schedule. Steps or Solver, when set, "
                       "replace the preset's schedule")


def quality_preset(identifier: str) -> str | None:
    """A Quality enum value -> the request's preset name (None: limits.DEFAULT_QUALITY)."""
    return identifier.lower() or None


def quality_identifier(preset: str | None) -> str:
    return (preset or limits.DEFAULT_QUALITY).upper()


STEPS_DESCRIPTION = ("For experts: solver steps, more is slower and smoother. 0 follows Quality; "
                     "any other value replaces the Quality schedule (with the model's solver "
                     "unless Solver is set)")
SOLVER_DESCRIPTION = ("For experts: the sampler's ODE solver, one the backend offers. Empty follows "
                      "Quality; a solver replaces the Quality schedule (with the model's steps "
                      "unless Steps is set). Fewer evaluations per step is faster per step")

# Loop: Off, then the methods the request knows (aam_seam.limits lists them; nothing here names one)
LOOP_OFF = "OFF"
LOOP_ITEMS = [(LOOP_OFF, "Off", "The clip ends where the motion ends")] + enum_items(limits.LOOP_METHODS)


def loop_method(identifier: str) -> str | None:
    """A Loop enum value -> the request's loop method (None: off)."""
    return None if identifier in ("", LOOP_OFF) else identifier.lower()


def loop_identifier(method: str | None) -> str:
    return method.upper() if method else LOOP_OFF


# Keep Shape: the model's own choice, then the modes the request knows (OFF / AUTO / ON)
KEEP_SHAPE_MODEL = "MODEL"
KEEP_SHAPE_ITEMS = [(KEEP_SHAPE_MODEL, "Model's", "The model's own choice: Auto for the embedded model, "
                     "Off for the official weights (their outputs as published)")] + enum_items(limits.KEEP_SHAPE_MODES)
KEEP_SHAPE_DESCRIPTION = ("Pull every frame back towards the mesh's own edge lengths, so that a rigid "
                          "or articulated motion does not stretch the surface (Animate Collection: "
                          "custom property aam_keep_shape, off, auto, on or model)")


def keep_shape_mode(identifier: str) -> str | None:
    """A Keep Shape enum value -> the request's mode (None: the model's own)."""
    return None if identifier in ("", KEEP_SHAPE_MODEL) else identifier.lower()


def keep_shape_identifier(mode: str | None) -> str:
    return mode.upper() if mode else KEEP_SHAPE_MODEL


THEN_DESCRIPTION = ("Prompts that follow the main prompt, one segment each; every segment starts "
                    "from the last pose of the one before (in Animate Collection: an object's "
                    "custom property aam_then, one prompt per line)")
MASK_DESCRIPTION = ("Only this vertex group moves, each vertex by its weight; vertices outside it "
                    "stay pinned (empty: the whole mesh moves). Animate Collection: custom "
                    "property aam_mask")
VARIATIONS_DESCRIPTION = ("Takes of the same request with seeds Seed, Seed + 1, ... made in one pass: "
                          "each plays on a temporary copy in the collection 'Variations'; pick one "
                          "with Keep This One")


class AnimateAnyMeshChainPrompt(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(
        name="Prompt", description="What the mesh does in this segment, starting where the one "
                                   "before ends", default="", maxlen=limits.MAX_PROMPT_CHARS)


class AnimateAnyMeshSettings(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(
        name="Prompt", description="What the mesh should do, e.g. \"a dragon flaps its wings\"",
        default="", maxlen=limits.MAX_PROMPT_CHARS)
    model: bpy.props.EnumProperty(name="Model", items=MODEL_ITEMS, default="PREFERENCES")
    model_dir: bpy.props.StringProperty(name="Model Folder", subtype="DIR_PATH",
                                        description="A model folder holding config.json")
    seed: bpy.props.IntProperty(name="Seed", default=1, min=0, max=MAX_SEED,
                                description="The same seed, prompt and mesh give the same motion")
    quality: bpy.props.EnumProperty(name="Quality", items=QUALITY_ITEMS,
                                    default=quality_identifier(limits.DEFAULT_QUALITY),
                                    description=QUALITY_DESCRIPTION)
    guidance: bpy.props.FloatProperty(
        name="Guidance", default=0.0, min=0.0, soft_max=10.0, step=10,
        description="How strongly the motion follows the prompt (classifier-free guidance); "
                    "0 uses the model's default (official: 3)")
    steps: bpy.props.IntProperty(name="Steps", default=0, min=0, max=limits.MAX_STEPS,
                                 description=STEPS_DESCRIPTION)
    solver: bpy.props.StringProperty(name="Solver", default="", search=solver_search,
                                     description=SOLVER_DESCRIPTION)
    num_traj: bpy.props.IntProperty(
        name="Tokens", default=0, min=0, max=limits.MAX_TOKENS,
        description="Trajectory tokens the model uses; 0 picks them from the vertex count. Lower "
                    "it when the GPU runs out of memory")
    strength: bpy.props.FloatProperty(
        name="Strength", default=1.0, min=limits.MIN_STRENGTH, max=limits.MAX_STRENGTH,
        description="Scale the motion: 1 as the model made it, 0 still, 2 twice as far")
    chain: bpy.props.CollectionProperty(type=AnimateAnyMeshChainPrompt, name="Then",
                                        description=THEN_DESCRIPTION)
    chain_index: bpy.props.IntProperty(name="Chained Prompt", default=0, min=0)
    repeat: bpy.props.IntProperty(
        name="Repeat", default=1, min=1, max=limits.MAX_SEGMENTS,
        description="Play the prompt and the prompts that follow it this many times in a row "
                    "(Animate Collection: custom property aam_repeat)")
    loop: bpy.props.EnumProperty(
        name="Loop", items=LOOP_ITEMS, default=LOOP_OFF,
        description="Make the clip loop: its end flows into its start. The clip is one period, and "
                    "Set Scene Range makes the scene's range exactly that period (Animate "
                    "Collection: custom property aam_loop, a method's name or off)")
    keep_shape: bpy.props.EnumProperty(name="Keep Shape", items=KEEP_SHAPE_ITEMS,
                                       default=KEEP_SHAPE_MODEL,
                                       description=KEEP_SHAPE_DESCRIPTION)
    mask_group: bpy.props.StringProperty(name="Mask", default="", description=MASK_DESCRIPTION)
    mask_falloff: bpy.props.FloatProperty(
        name="Falloff", default=0.0, min=0.0, max=limits.MAX_FALLOFF, subtype="FACTOR",
        description="Soften the mask's edge over this share of the mesh's size (0: a hard edge); "
                    "Animate Collection: custom property aam_mask_falloff")
    variations: bpy.props.IntProperty(
        name="Variations", default=1, min=1, max=limits.MAX_VARIATIONS,
        description=VARIATIONS_DESCRIPTION + " (Animate Collection: custom property aam_variations)")
    length: bpy.props.EnumProperty(name="Length", items=LENGTH_ITEMS, default="MODEL")
    length_frames: bpy.props.IntProperty(
        name="Frames", default=48, min=limits.MIN_FRAMES, max=limits.MAX_FRAMES,
        description="Frames the clip is retimed to")
    length_seconds: bpy.props.FloatProperty(
        name="Seconds", default=2.0, min=0.05, soft_max=30.0, unit="TIME_ABSOLUTE",
        description="How long the clip plays, at the scene's frame rate and the frame step")
    set_scene_range: bpy.props.BoolProperty(
        name="Set Scene Range", default=False,
        description="After animating, the scene's frame range (and preview range) becomes the clip's")
    frame_start: bpy.props.IntProperty(name="Start", default=1,
                                       description="Scene frame of the first model frame")
    timing: bpy.props.EnumProperty(name="Timing", items=TIMING_ITEMS, default="STEP")
    frame_step: bpy.props.FloatProperty(
        name="Step", default=1.0, min=0.01, soft_max=10.0,
        description="Scene frames from one model frame to the next")
    frame_rate: bpy.props.FloatProperty(
        name="Rate", default=16.0, min=0.1, soft_max=120.0,
        description="Model frames per second of playback (the official clips are 16 frames)")
    mode: bpy.props.EnumProperty(name="Write", items=targets.enum_items(),
                                 default=targets.all_targets()[0].name)
    bones: bpy.props.IntProperty(
        name="Bones", default=skinning.DEFAULT_BONES, min=1, max=skinning.MAX_BONES,
        description="Deforming bones of the baked armature (under one root bone); more follow "
                    "finer motion, fewer are lighter for a game engine")
    bake_keep_vertex_animation: bpy.props.BoolProperty(
        name="Keep Vertex Animation", default=False,
        description="Bake onto a copy and leave the mesh's shape keys or cache as they are (an "
                    "animation that AnimateAnyMesh did not make always stays, on a copy)")
    device: bpy.props.EnumProperty(name="Device", items=DEVICE_ITEMS, default="PREFERENCES")
    keep_rest: bpy.props.BoolProperty(
        name="Start From Rest Pose", default=True,
        description="Shift the motion so its first frame is your mesh exactly (no jump at the start)")
    together: bpy.props.BoolProperty(
        name="Selected as One", default=True,
        description="Animate all selected meshes as one scene in world space (they move together, "
                    "as the parts of one character); off: one after the other, each on its own")
    batch_collection: bpy.props.PointerProperty(
        name="Collection", type=bpy.types.Collection,
        description="Every mesh in this collection (and its children) is animated on its own")
    batch_prompt_property: bpy.props.StringProperty(
        name="Prompt Property", default=batch.DEFAULT_PROMPT_PROPERTY,
        description="Custom property holding an object's own prompt; objects without it use the "
                    "panel's prompt. " + batch.OVERRIDES_HELP)
    batch_attempts: bpy.props.IntProperty(
        name="Attempts", default=2, min=1, max=10,
        description="Tries per object when the backend fails on its own (it died, an internal error)")
    show_queue: bpy.props.BoolProperty(name="Show Queue", default=True)


CLASSES = (AnimateAnyMeshChainPrompt, AnimateAnyMeshSettings)


def register():
    bpy.types.Scene.animateanymesh = bpy.props.PointerProperty(type=AnimateAnyMeshSettings)


def unregister():
    del bpy.types.Scene.animateanymesh

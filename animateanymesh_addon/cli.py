"""Headless AnimateAnyMesh: open a scene or a mesh file, animate, write the result.

    python -m animateanymesh_addon.cli animate INPUT --prompt TEXT --out OUTPUT
        [--objects A B ... | --collection NAME] [--model default|official|DIR] [--seed S]
        [--quality draft|standard|reference] [--steps K] [--solver NAME] [--guidance G]
        [--num-traj N] [--device auto|cpu|cuda]
        [--then PROMPT ...] [--repeat K] [--loop [METHOD]] [--mask GROUP [--mask-falloff F]]
        [--variations K] [--keep-shape off|auto|on] [--frames N | --seconds S] [--strength X] [--set-range]
        [--mode TARGET | --armature [BONES]] [--frame-start F] [--frame-step S] [--no-keep-rest]
        [--separately] [--preview PNG [--preview-size PX] [--preview-columns C]
        [--preview-frames N]] [--python BACKEND_PYTHON] [--ray [ADDRESS] [--ray-workers W]]

Run it with the Python that has the `bpy` module (the bpy wheel), from the repository root or
from the folder the extension is installed in (then the package is `animateanymesh`). It drives
the same operators, backend client and backend process as the panel: Animate for the selected
objects (`--objects`, or every mesh of the scene), Animate Collection for `--collection` (each
object on its own, with its own prompt from the `aam_prompt` custom property when it has one,
and the other settings from `aam_then`, `aam_repeat`, `aam_loop`, `aam_mask`, `aam_mask_falloff`,
`aam_variations` and `aam_keep_shape` when it has them). With --variations K each take plays on a copy of the
objects in the collection "Variations" (a line per take says its seed); the originals stay.

INPUT: .blend, .glb / .gltf, .fbx or .obj. OUTPUT: .blend (point caches are written next to it
and referenced relatively), or a bake: .fbx (blend shapes), .abc, .glb / .gltf (morph targets);
with --armature the .fbx / .glb / .gltf holds the skeleton and its skin instead.

Exit status: 0 done; 1 the backend failed (or some batch items failed); 2 a problem with the
input or the command line (the message says what to fix); 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import skinning
from .seam import ErrorCode, SeamError, codes, limits

INPUTS = {".blend", ".glb", ".gltf", ".fbx", ".obj"}
OUTPUTS = {".blend", ".fbx", ".abc", ".glb", ".gltf"}


def write_targets() -> dict:
    """--mode value -> write-back target (the registry needs bpy, so it is read when asked)."""
    from . import targets

    return {t.cli_name: t for t in targets.all_targets()}


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {__package__}.cli",
                                description="AnimateAnyMesh in Blender, without the UI")
    sub = p.add_subparsers(title="commands", dest="command")
    a = sub.add_parser("animate", help="animate meshes of a file from a text prompt")
    a.add_argument("input", type=Path, help=".blend, .glb/.gltf, .fbx or .obj")
    a.add_argument("--prompt", default="", help="what the mesh should do (with --collection: for "
                   "objects without their own aam_prompt property)")
    which = a.add_mutually_exclusive_group()
    which.add_argument("--objects", nargs="+", metavar="NAME", help="mesh objects to animate "
                       "(default: every mesh in the scene)")
    which.add_argument("--collection", metavar="NAME", help="animate each mesh of this collection "
                       "on its own (batch queue)")
    a.add_argument("--out", type=Path, required=True, help=".blend, .fbx, .abc, .glb or .gltf")
    a.add_argument("--model", default="default", help="default, official, or a model folder")
    a.add_argument("--seed", type=int, default=1)
    # checked in check_args, not by choices: a bad name is one line, not the usage as well
    a.add_argument("--quality", default=None, metavar="{" + ",".join(limits.QUALITY_PRESETS) + "}",
                   help=f"how much sampling a take gets (default {limits.DEFAULT_QUALITY}; --steps "
                        "or --solver replace its schedule): " + "; ".join(
                            f"{name}: {text}" for name, text in limits.QUALITY_PRESETS.items()
                        ).replace("%", "%%"))  # argparse formats help with %
    a.add_argument("--steps", type=int, default=0, help="for experts: solver steps, replacing "
                   "the --quality schedule (0: follow --quality)")
    a.add_argument("--solver", default="", help="for experts: ODE solver, one the backend offers "
                   "(an unknown name is refused with the list), replacing the --quality schedule "
                   "(default: follow --quality)")
    a.add_argument("--guidance", type=float, default=0.0, help="guidance (0: the model's default)")
    a.add_argument("--num-traj", type=int, default=0, help="tokens (0: from the vertex count)")
    length = a.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, default=None,
                        help="retime the clip to this many frames (default: the model's 16)")
    length.add_argument("--seconds", type=float, default=None,
                        help="retime the clip to last this long at the scene's frame rate")
    a.add_argument("--strength", type=float, default=1.0,
                   help="scale the motion, 0 to 2 (1: as the model made it)")
    a.add_argument("--then", action="append", default=[], metavar="PROMPT",
                   help="chain another segment that starts where the last one ends (repeatable)")
    a.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="play the prompt (and its --then chain) K times in a row")
    a.add_argument("--loop", nargs="?", const=limits.DEFAULT_LOOP, default=None,
                   choices=list(limits.LOOP_METHODS), metavar="METHOD",
                   help=f"make the clip loop seamlessly (default method {limits.DEFAULT_LOOP}): " + "; ".join(
                       f"{name}: {text}" for name, text in limits.LOOP_METHODS.items()))
    a.add_argument("--mask", default="", metavar="GROUP",
                   help="only this vertex group moves, by its weights; the rest stays pinned")
    a.add_argument("--mask-falloff", type=float, default=None, metavar="F",
                   help="soften the mask's edge over this share of the mesh's size (0 to 1)")
    a.add_argument("--variations", type=int, default=1, metavar="K",
                   help="K takes (seeds seed, seed+1, ...), each on a copy in the collection "
                        "'Variations'")
    a.add_argument("--keep-shape", choices=list(limits.KEEP_SHAPE_MODES), default=None,
                   help=f"pull every frame back towards the mesh's edge lengths (default "
                   f"{limits.MODEL_KEEP_SHAPE}): " + "; ".join(
                       f"{name}: {text}" for name, text in limits.KEEP_SHAPE_MODES.items()))
    a.add_argument("--set-range", action="store_true",
                   help="make the scene's frame range the clip's (saved in a .blend output)")
    a.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    modes = write_targets()
    a.add_argument("--mode", choices=list(modes), default=None,
                   help="how the animation is written: " + "; ".join(
                       f"{name}: {t.label}" for name, t in modes.items())
                   + f" (default: {next(iter(modes))})")
    a.add_argument("--armature", type=int, nargs="?", const=skinning.DEFAULT_BONES, default=None,
                   metavar="BONES", help="bake to an armature with skin weights: --mode armature "
                   f"with BONES deforming bones (default {skinning.DEFAULT_BONES}) under a root")
    a.add_argument("--frame-start", type=float, default=1.0)
    a.add_argument("--frame-step", type=float, default=1.0, help="scene frames per model frame")
    a.add_argument("--no-keep-rest", dest="keep_rest", action="store_false",
                   help="keep the model's own first frame instead of starting from the mesh as is")
    a.add_argument("--separately", action="store_true",
                   help="animate the objects one by one instead of as one scene")
    a.add_argument("--preview", type=Path, default=None, help="also render a contact sheet (PNG)")
    a.add_argument("--preview-size", type=int, default=256, help="tile size in pixels")
    a.add_argument("--preview-columns", type=int, default=4)
    a.add_argument("--preview-frames", type=int, default=0, help="at most this many tiles (0: all)")
    a.add_argument("--python", default="", help="the backend's Python (default: Auto, as in the "
                   "add-on preferences)")
    a.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="with --collection: run the objects on a Ray cluster at once (empty: Ray "
                   "starts on this machine; HOST:6379, ray://HOST:10001 or auto)")
    a.add_argument("--ray-workers", type=int, default=0, help="Ray workers (0: automatic)")
    return p


def check_args(args) -> None:
    """Everything that can be judged before Blender starts."""
    if not args.input.is_file():
        raise UsageError(f"input file {args.input} does not exist.")
    if args.input.suffix.lower() not in INPUTS:
        raise UsageError(f"cannot open {args.input.name}: use one of {', '.join(sorted(INPUTS))}.")
    if args.out.suffix.lower() not in OUTPUTS:
        raise UsageError(f"cannot write {args.out.name}: --out must end in one of "
                         f"{', '.join(sorted(OUTPUTS))}.")
    if not args.out.parent.is_dir():
        raise UsageError(f"the output folder {args.out.parent} does not exist.")
    if not args.collection and not args.prompt.strip():
        raise UsageError("--prompt is empty: say what the mesh should do, e.g. --prompt "
                         "\"a bird flaps its wings\".")
    if args.preview is not None and args.preview.suffix.lower() != ".png":
        raise UsageError(f"--preview must end in .png (got {args.preview.name}).")
    if args.preview_size < 16 or args.preview_columns < 1 or args.preview_frames < 0:
        raise UsageError("--preview-size must be >= 16, --preview-columns >= 1, --preview-frames >= 0.")
    if args.python and not Path(args.python).is_file():
        raise UsageError(f"--python {args.python} does not exist.")
    if args.ray is not None and not args.collection:
        raise UsageError("--ray runs a batch: give it --collection NAME (a single Animate runs in "
                         "the warm backend here).")
    if args.ray_workers < 0:
        raise UsageError("--ray-workers takes 0 (automatic) or a positive count.")
    if args.seed < 0 or args.steps < 0 or args.num_traj < 0 or args.guidance < 0:
        raise UsageError("--seed, --steps, --num-traj and --guidance cannot be negative.")
    try:
        limits.check_quality(args.quality)
    except SeamError as exc:
        raise UsageError(f"--quality: {exc.message}") from None
    try:  # the request's own ranges, before Blender starts
        limits.check_frames(args.frames)
        limits.check_strength(args.strength)
        limits.check_variations(args.variations)
        limits.check_repeat(args.repeat)
    except SeamError as exc:
        raise UsageError(f"--{exc.message}") from None
    try:
        limits.check_mask_falloff(args.mask_falloff)
    except SeamError:
        raise UsageError(f"--mask-falloff must be between 0 and {limits.MAX_FALLOFF:g} (got "
                         f"{args.mask_falloff:g}), a share of the mesh's size; 0 is a hard edge.") from None
    try:
        limits.check_then(limits.chained(args.prompt or "-", args.then, args.repeat))  # -: each object's own
    except SeamError as exc:
        raise UsageError(f"--then: {exc.message}") from None
    if args.mask_falloff is not None and not args.mask:
        raise UsageError("--mask-falloff softens a mask: give the vertex group with --mask GROUP.")
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise UsageError("--seconds must be a positive length, e.g. --seconds 2.")
    if args.model not in ("default", "official") and not Path(args.model).is_dir():
        raise UsageError(f"--model {args.model}: not default, official, or an existing folder.")
    if args.armature is not None:
        if args.mode not in (None, "armature"):
            raise UsageError(f"--armature writes an armature, but --mode says {args.mode}: give one "
                             "of them.")
        if not 1 <= args.armature <= skinning.MAX_BONES:
            raise UsageError(f"--armature {args.armature}: use 1 to {skinning.MAX_BONES} bones.")
        args.mode = "armature"
    elif args.mode is None:
        args.mode = next(iter(write_targets()))


# ----------------------------------------------------------------------------- Blender side

def open_input(path: Path) -> None:
    import bpy

    ext = path.suffix.lower()
    if ext == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
        return
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if ext == ".obj":
        bpy.ops.wm.obj_import(filepath=str(path))
    elif ext == ".fbx":
        bpy.ops.import_scene.fbx(filepath=str(path))
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))


def enable_addon(args):
    """Enable this package as an add-on (the import reset the preferences) and set its
    preferences from the command line. Returns the session module."""
    import os

    import addon_utils
    import bpy

    package = sys.modules[__package__]
    # `python -m` imported the package already; tell addon_utils it is current, or it reloads it
    package.__time__ = os.path.getmtime(package.__file__)
    addon_utils.enable(__package__, default_set=True)
    if bpy.context.preferences.addons.get(__package__) is None:
        raise RuntimeError(f"could not enable the add-on {__package__}")
    from . import session

    prefs = session.preferences()
    if args.python:
        # absolute, not resolved: a venv's python is a symlink whose target lacks the venv
        prefs.python_mode, prefs.python_path = "PATH", os.path.abspath(args.python)
    if args.ray is not None:
        prefs.batch_runner, prefs.ray_address, prefs.ray_workers = "RAY", args.ray, args.ray_workers
    return session


def pick_objects(args) -> list:
    import bpy

    if args.collection:
        collection = bpy.data.collections.get(args.collection)
        if collection is None:
            raise UsageError(f"no collection named '{args.collection}' in {args.input.name}; "
                             f"collections: {', '.join(c.name for c in bpy.data.collections) or 'none'}.")
        objs = [o for o in collection.all_objects if o.type == "MESH"]
    elif args.objects:
        missing = [n for n in args.objects if bpy.data.objects.get(n) is None]
        if missing:
            known = ", ".join(o.name for o in bpy.data.objects if o.type == "MESH")
            raise UsageError(f"no object named {', '.join(missing)} in {args.input.name}; meshes: "
                             f"{known or 'none'}.")
        objs = [bpy.data.objects[n] for n in args.objects]
        not_mesh = [o.name for o in objs if o.type != "MESH"]
        if not_mesh:
            raise UsageError(f"{', '.join(not_mesh)} are not meshes; only meshes can be animated.")
    else:
        from .variations import is_copy

        # takes left side by side by an earlier --variations run are not meshes of the scene
        objs = [o for o in bpy.context.scene.objects if o.type == "MESH" and not is_copy(o)]
    if not objs:
        raise UsageError(f"{args.input.name} holds no mesh objects to animate.")
    return objs


def run_operator(session, call) -> tuple[str, str]:
    """Call an operator; (outcome code, message). An operator's ERROR report raises
    RuntimeError in bpy.ops: its text is the message, the code is in the session."""
    try:
        call()
    except RuntimeError as exc:
        outcome = session.last_outcome() or ("internal", str(exc))
        return outcome[0] or "internal", outcome[1]
    return session.last_outcome() or ("", "")


def animate(args) -> int:
    import bpy

    open_input(args.input)
    session = enable_addon(args)
    objects = pick_objects(args)
    out = args.out.resolve()
    cache_dir = ""
    target = write_targets()[args.mode]
    if target.keeps_files:
        # next to the output, so the .blend and its files move together
        cache = out.parent / f"{out.stem}_{args.mode}"
        cache.mkdir(exist_ok=True)
        cache_dir = str(cache)

    s = bpy.context.scene.animateanymesh
    s.model, s.model_dir = ("DIRECTORY", str(Path(args.model).resolve())) if args.model not in (
        "default", "official") else (args.model.upper(), "")
    s.seed, s.steps, s.guidance, s.num_traj = args.seed, args.steps, args.guidance, args.num_traj
    s.solver = args.solver
    # not given: the default preset, which the request leaves out (the backend's default applies)
    s.quality = (args.quality or limits.DEFAULT_QUALITY).upper()
    s.strength = args.strength
    s.length = ("FRAMES" if args.frames is not None else "SECONDS" if args.seconds is not None
                else "MODEL")
    if args.frames is not None:
        s.length_frames = args.frames
    if args.seconds is not None:
        s.length_seconds = args.seconds
    s.chain.clear()
    for text in args.then:
        s.chain.add().prompt = text
    s.repeat, s.variations = args.repeat, args.variations
    s.loop = args.loop.upper() if args.loop else "OFF"
    s.keep_shape = args.keep_shape.upper() if args.keep_shape else "MODEL"
    s.mask_group, s.mask_falloff = args.mask, args.mask_falloff or 0.0
    s.set_scene_range = args.set_range
    s.device = args.device.upper()
    s.mode = target.name
    if args.armature is not None:
        s.bones = args.armature
    s.frame_start, s.timing, s.frame_step = int(args.frame_start), "STEP", args.frame_step
    s.keep_rest, s.together, s.prompt = args.keep_rest, not args.separately, args.prompt
    session.set_outcome("", "")
    if args.collection:
        code, message = run_operator(session, lambda: bpy.ops.animateanymesh.animate_collection(
            collection=args.collection, cache_dir=cache_dir))
    else:
        code, message = run_operator(session, lambda: bpy.ops.animateanymesh.animate(
            objects="\n".join(o.name for o in objects), frame_start=args.frame_start,
            cache_dir=cache_dir))
    from . import variations

    copies = variations.copies_of(o.name for o in objects)
    done = [o for o in objects if o.get("animateanymesh") is not None] + copies
    if code and code != ErrorCode.ITEMS_FAILED:
        print(f"error: {message}", file=sys.stderr)
        session.forget_client()
        return 130 if code == ErrorCode.CANCELLED else (2 if code in codes.USER_FIXABLE else 1)
    print(message)
    if args.collection:
        for item in session.load_queue().items:
            tail = f": {item.error}" if item.status != "done" and item.error else ""
            print(f"  {item.object_name}: {item.status}{tail}")
    takes: dict = {}
    for copy in copies:
        key = (copy[variations.OF_PROP] if args.collection else "", int(copy[variations.TAKE_PROP]))
        takes.setdefault(key, (int(copy[variations.SEED_PROP]), []))[1].append(copy.name)
    for (original, take), (seed, names) in sorted(takes.items()):
        where = f"{original} " if original else ""
        print(f"  {where}take {take}: seed {seed} on {', '.join(names)}")
    session.forget_client()  # the model is not needed for writing and previews

    write_output(out, done or objects, cache_dir)
    print(f"wrote {out}")
    if args.preview is not None and done:
        from .workbench_sheet import contact_sheet

        png = contact_sheet(done, args.preview.resolve(), size=args.preview_size,
                            columns=args.preview_columns, max_tiles=args.preview_frames or None)
        print(f"wrote {png}")
    return 1 if code == ErrorCode.ITEMS_FAILED else 0


def write_output(out: Path, objects, cache_dir: str) -> None:
    import bpy

    if out.suffix.lower() == ".blend":
        # the add-on's save handler points every cache at the output's own folder, relatively
        bpy.ops.wm.save_as_mainfile(filepath=str(out), copy=True, check_existing=False)
        return
    from .export import export_animation

    for warning in export_animation(objects, out):
        print(f"warning: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "animate":
        parser.print_help()
        return 2
    try:
        check_args(args)
        return animate(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an exporter's or the preview's error: one line, not a traceback
        from .export import ExportError
        from .workbench_sheet import PreviewError

        if isinstance(exc, (ExportError, PreviewError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

"""Chained prompts, loops, masks, variations and Quality through the panel's operators in real
Blender (the bpy wheel), with the built zip installed, a real backend process and the tiny model.

Each scenario runs in one Blender child and drives the operators a user's clicks run; the parent
compares what was written with what the backend's own pipeline answers for the same request
(so a wrong `then`, a mask sent in another vertex order or a take put on the wrong copy shows).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from blender_util import requires_bpy, run_in_blender

MODULE = "test_blender_artist_controls"
pytestmark = [pytest.mark.blender, pytest.mark.slow, requires_bpy]
SEED, STEPS, TOKENS = 7, 3, 32
REFERENCE_STEPS = 5  # the model's own schedule in this module: the Reference preset's
PROMPT = "a flag waves in the wind"
THEN = "the flag falls down"
T = 16  # the tiny model's take


# ============================================================================ inside Blender

def _setup(zip_path, python, model_dir):
    import bpy

    from test_blender_addon import PACKAGE, _install, _mesh

    session, bw, targets = _install(zip_path, python, model_dir)
    a = _mesh("A", 5, 4)
    b = _mesh("B", 4, 4, location=(1.0, -2.0, 0.5), rotation=(0.3, -0.2, 0.7), wave=-0.08)
    # "Top": the upper rows of each grid, half weight on one row; the rest must stay pinned
    for obj, rows in ((a, (2, 3)), (b, (3,))):
        group = obj.vertex_groups.new(name="Top")
        nx = 5 if obj is a else 4
        for y in rows:
            group.add([y * nx + x for x in range(nx)], 1.0 if y == rows[-1] else 0.5, "REPLACE")
    bpy.context.view_layer.update()
    for obj in (a, b):
        obj.select_set(True)
    bpy.context.view_layer.objects.active = a
    calls = []
    client = session.client()
    submit = client.submit

    def recording_submit(vertices, faces, prompt, mask=None, **options):
        calls.append({"prompt": prompt, "mask": None if mask is None else np.asarray(mask).tolist(),
                      **{k: options.get(k) for k in ("then", "loop", "variations", "mask_falloff",
                                                     "frames", "strength", "seed", "quality",
                                                     "steps", "solver", "keep_shape")}})
        return submit(vertices, faces, prompt, mask=mask, **options)

    client.submit = recording_submit
    controller = sys.modules[PACKAGE + ".controller"]
    return session, bw, targets, calls, controller


def _sent(names) -> dict:
    from test_blender_addon import _sent as sent_one

    import bpy

    return {n: sent_one(bpy.data.objects[n]) for n in names}


def _frames(targets, name):
    import bpy

    return targets.animation_frames(bpy.data.objects[name]).tolist()


def _plays(obj, frames) -> bool:
    """The object plays `frames` on the timeline (frame i at scene frame 1 + i)."""
    from blender_util import evaluated_positions

    return all(np.abs(evaluated_positions(obj, 1 + i) - np.asarray(frames[i])).max() < 1e-5
               for i in (3, 8, len(frames) - 1))


def _refused(session, call) -> list:
    from test_blender_addon import PACKAGE

    controller = sys.modules[PACKAGE + ".controller"]
    try:
        call()
    except RuntimeError:
        pass  # an operator's ERROR report
    except TypeError as exc:  # bpy.ops refused an argument before the operator ran
        return ["argument", str(exc)]
    except controller.AnimateError as exc:
        return [exc.code, exc.message]
    return list(session.last_outcome())


def _quality_ui(s) -> dict:
    """The panel's Quality: its items, default and tooltips, and where the panel draws it."""
    import bpy

    from test_blender_addon import PACKAGE, _FakeLayout

    prop = s.bl_rna.properties["quality"]
    log = []

    class Host:
        layout = _FakeLayout(log)

    panel = sys.modules[PACKAGE + ".panel"]
    panel.VIEW3D_PT_animateanymesh.draw(Host(), bpy.context)
    return {"items": [(i.identifier, i.name, i.description) for i in prop.enum_items],
            "default": prop.default, "tooltips": {n: s.bl_rna.properties[n].description
                                                   for n in ("quality", "steps", "solver")},
            "drawn": [name for kind, name in log if kind == "prop"]}


def _scene_state() -> dict:
    import bpy

    out = {"objects": sorted(o.name for o in bpy.data.objects),
           "collections": sorted(c.name for c in bpy.data.collections),
           "meshes": len(bpy.data.meshes), "actions": len(bpy.data.actions),
           "range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end]}
    for obj in bpy.data.objects:
        key = obj.data.shape_keys
        out[obj.name] = {"keys": [kb.name for kb in key.key_blocks] if key else [],
                         "modifiers": [m.type for m in obj.modifiers],
                         "record": obj.get("animateanymesh") is not None}
    return out


def scenario_chain_loop_mask(zip_path: str, python: str, model_dir: str) -> dict:
    import bpy

    session, bw, targets, calls, controller = _setup(zip_path, python, model_dir)
    s = bpy.context.scene.animateanymesh
    out = {"sent": _sent(("A", "B"))}

    # a chain of two prompts from the panel's list: 16 + 15 frames, the seam frame shared
    assert bpy.ops.animateanymesh.chain_add(prompt=THEN) == {"FINISHED"}
    assert bpy.ops.animateanymesh.animate(objects="A") == {"FINISHED"}
    out["chain"] = {"frames": _frames(targets, "A"), "call": calls[-1],
                    "message": session.last_outcome()[1]}
    # Repeat 2 plays the prompt and its chain twice: then = [THEN, PROMPT, THEN]
    s.repeat = 2
    assert bpy.ops.animateanymesh.animate(objects="A") == {"FINISHED"}
    out["repeat"] = {"num_frames": len(_frames(targets, "A")), "call": calls[-1]}
    s.repeat = 1
    assert bpy.ops.animateanymesh.chain_remove() == {"FINISHED"} and len(s.chain) == 0

    # Quality: the panel's preset (Steps 0, else it replaces the preset), then the operator's own
    # over the panel's; each is a new request (the kept result of the other is not reused)
    out["quality_ui"] = _quality_ui(s)
    s.steps, s.quality = 0, "DRAFT"
    assert bpy.ops.animateanymesh.animate(objects="A") == {"FINISHED"}
    out["draft"] = {"frames": _frames(targets, "A"), "call": calls[-1], "asked": len(calls)}
    assert bpy.ops.animateanymesh.animate(objects="A", quality="REFERENCE") == {"FINISHED"}
    out["reference"] = {"frames": _frames(targets, "A"), "call": calls[-1], "asked": len(calls)}
    s.steps, s.quality = STEPS, "STANDARD"

    # a loop, written closed, and the scene's range exactly its period
    s.loop, s.set_scene_range = "BLEND", True
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 250
    assert bpy.ops.animateanymesh.animate(objects="A") == {"FINISHED"}
    out["loop"] = {"frames": _frames(targets, "A"), "call": calls[-1],
                   "record": bw.animation_info(bpy.data.objects["A"]),
                   "range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end],
                   "message": session.last_outcome()[1]}
    # the other method, retimed to 20 frames and started on frame 5: range 5-24
    assert bpy.ops.animateanymesh.animate(objects="A", loop="CROSSFADE", frames=20,
                                          frame_start=5) == {"FINISHED"}
    out["crossfade"] = {"num_frames": len(_frames(targets, "A")), "call": calls[-1],
                        "range": [bpy.context.scene.frame_start, bpy.context.scene.frame_end]}
    s.loop, s.set_scene_range = "OFF", False

    # a mask on both objects animated as one: weights in the order of the vertices sent
    s.mask_group = "Top"
    assert bpy.ops.animateanymesh.animate() == {"FINISHED"}
    out["mask"] = {"call": calls[-1], "frames": {n: _frames(targets, n) for n in ("A", "B")}}

    # everything at once: chain + loop + mask with falloff + length + strength
    s.chain.add().prompt = THEN
    s.loop, s.mask_falloff, s.strength, s.keep_shape = "BLEND", 0.2, 0.5, "ON"
    s.length, s.length_frames = "FRAMES", 24
    assert bpy.ops.animateanymesh.animate(objects="A") == {"FINISHED"}
    out["combined"] = {"call": calls[-1], "frames": _frames(targets, "A")}
    s.chain.clear()
    s.loop, s.mask_falloff, s.strength, s.length, s.keep_shape = "OFF", 0.0, 1.0, "MODEL", "MODEL"

    # bad values: one line each, and nothing in the scene changes
    b = bpy.data.objects["B"]
    b.vertex_groups.remove(b.vertex_groups["Top"])
    before = _scene_state()
    asked = len(calls)
    refusals = {
        "missing group": _refused(session, lambda: bpy.ops.animateanymesh.animate()),
        "repeat 0": _refused(session, lambda: bpy.ops.animateanymesh.animate(objects="A", repeat=0)),
        "variations 40": _refused(session, lambda: bpy.ops.animateanymesh.animate(objects="A",
                                                                                  variations=40)),
        "empty chained prompt": _refused(session, lambda: bpy.ops.animateanymesh.animate(
            objects="A", then=f"{THEN}\n \nit jumps")),
        "falloff 3": _refused(session, lambda: bpy.ops.animateanymesh.animate(objects="A",
                                                                              mask_falloff=3.0)),
        "chain too long": _refused(session, lambda: bpy.ops.animateanymesh.animate(
            objects="A", then=THEN, repeat=9)),
        # the operator's enum refuses a name it does not know; the options' own check, the rest
        "quality bogus": _refused(session, lambda: bpy.ops.animateanymesh.animate(
            objects="A", quality="BOGUS")),
        "quality options": _refused(session, lambda: controller.AnimateOptions(
            prompt=PROMPT, quality="bogus").check()),
    }
    out["refusals"] = refusals
    out["unchanged"] = _scene_state() == before and len(calls) == asked  # no job was even sent
    session.forget_client()
    return out


def scenario_variations_and_batch(zip_path: str, python: str, model_dir: str) -> dict:
    import bpy

    from test_blender_addon import PACKAGE, _FakeLayout, _mesh

    session, bw, targets, calls, controller = _setup(zip_path, python, model_dir)
    variations = sys.modules[PACKAGE + ".variations"]
    panel = sys.modules[PACKAGE + ".panel"]
    s = bpy.context.scene.animateanymesh
    bpy.ops.object.select_all(action="DESELECT")
    a = bpy.data.objects["A"]
    a.select_set(True)
    bpy.context.view_layer.objects.active = a
    out = {"sent": _sent(("A",))}
    bpy.ops.ed.undo_push(message="scene built")
    # A carries an animation of its own already: the copies must not touch it (their shape keys
    # are copies of A's, and the copied Key would share A's action)
    assert bpy.ops.animateanymesh.animate("EXEC_DEFAULT", True, seed=SEED + 10) == {"FINISHED"}
    earlier = _frames(targets, "A")

    s.variations = 3
    assert bpy.ops.animateanymesh.animate("EXEC_DEFAULT", True) == {"FINISHED"}
    coll = bpy.data.collections.get("Variations")
    copies = sorted(coll.objects, key=lambda o: o["aam_take"])
    width = float(np.ptp([(a.matrix_world @ v.co).x for v in a.data.vertices]))
    out["variations"] = {
        "call": calls[-1], "message": session.last_outcome()[1],
        "in_scene": coll.name in bpy.context.scene.collection.children,
        "copies": [{"name": c.name, "of": c["aam_variation_of"], "take": c["aam_take"],
                    "seed": c["aam_seed"], "shared_mesh": c.data == a.data,
                    "offset": list(c.matrix_world.translation - a.matrix_world.translation),
                    "frames": _frames(targets, c.name),
                    "plays": _plays(c, _frames(targets, c.name)),
                    "in_collections": [x.name for x in c.users_collection]} for c in copies],
        "width": width, "original_kept": _frames(targets, "A") == earlier,
        "original_seed": bw.animation_info(a)["seed"]}
    with_copies = _scene_state()

    # the panel shows Keep This One for a copy
    log = []

    class Host:
        layout = _FakeLayout(log)

    bpy.context.view_layer.objects.active = copies[1]
    panel.VIEW3D_PT_animateanymesh.draw(Host(), bpy.context)
    out["panel"] = [entry for entry in log if entry[0] in ("operator", "label")]

    # Keep This One on take 2: its frames go to the original, the copies and collection go
    chosen = _frames(targets, copies[1].name)
    copy_meshes = [c.data.name for c in copies]
    assert bpy.ops.animateanymesh.keep_variation("EXEC_DEFAULT", True) == {"FINISHED"}
    out["kept"] = {"frames": _frames(targets, "A"), "chosen": chosen,
                   "record": bw.animation_info(bpy.data.objects["A"]),
                   "collection": bpy.data.collections.get("Variations") is not None,
                   "copies": [o.name for o in bpy.data.objects if variations.is_copy(o)],
                   "meshes_left": [m for m in copy_meshes if bpy.data.meshes.get(m) is not None],
                   "message": session.last_outcome()[1]}
    bpy.ops.ed.undo()  # Keep was one undo step: the copies are back, the original as before
    s = bpy.context.scene.animateanymesh  # undo reloads the data: references from before are stale
    out["undone"] = {"same": _scene_state() == with_copies,
                     "copies": len([o for o in bpy.data.objects if variations.is_copy(o)])}

    # Discard Variations removes them all and the collection
    assert bpy.ops.animateanymesh.discard_variations(variation="A") == {"FINISHED"}
    out["discarded"] = {"collection": bpy.data.collections.get("Variations") is not None,
                        "objects": sorted(o.name for o in bpy.data.objects),
                        "original_kept": _frames(targets, "A") == earlier,
                        "original_plays": _plays(bpy.data.objects["A"], earlier)}

    # a point cache take, kept by name: the original gets its own cache with the same frames
    assert bpy.ops.animateanymesh.animate(objects="A", variations=2, mode="POINT_CACHE") == {"FINISHED"}
    chosen = _frames(targets, "A take 1")
    assert bpy.ops.animateanymesh.keep_variation(variation="A take 1") == {"FINISHED"}
    a = bpy.data.objects["A"]
    out["kept_cache"] = {"mode": bw.animation_info(a)["mode"], "same": _frames(targets, "A") == chosen,
                         "plays": _plays(a, chosen), "copies": len(variations.all_copies()),
                         "modifiers": [m.type for m in a.modifiers]}
    s.variations = 1

    # Animate Collection: per-object overrides in custom properties
    crowd = bpy.data.collections.new("Crowd")
    bpy.context.scene.collection.children.link(crowd)
    flag, bird = _mesh("Flag", 4, 3), _mesh("Bird", 5, 3, location=(4, 0, 0))
    flag.vertex_groups.new(name="Top").add([8, 9, 10, 11], 1.0, "REPLACE")
    for obj in (flag, bird):
        for c in obj.users_collection:
            c.objects.unlink(obj)
        crowd.objects.link(obj)
    flag["aam_then"] = f"{THEN}\n\n"
    flag["aam_loop"] = "blend"
    flag["aam_mask"] = "Top"
    bird["aam_variations"] = 2
    s.batch_collection = crowd
    bpy.ops.ed.undo_push(message="crowd built")

    # a bad override refuses the whole batch before anything runs
    bird["aam_loop"] = "sideways"
    bpy.ops.ed.undo_push(message="bad override")
    before = _scene_state()
    asked = len(calls)
    bad = _refused(session, lambda: bpy.ops.animateanymesh.animate_collection())
    out["bad_override"] = {"refusal": bad, "unchanged": _scene_state() == before and len(calls) == asked}
    del bird["aam_loop"]
    flag_missing = flag["aam_mask"]
    flag["aam_mask"] = "Nope"
    out["bad_group"] = _refused(session, lambda: bpy.ops.animateanymesh.animate_collection())
    flag["aam_mask"] = flag_missing

    asked = len(calls)
    s.quality = "DRAFT"  # the panel's, for every object (no per-object override)
    assert bpy.ops.animateanymesh.animate_collection() == {"FINISHED"}
    batch_calls = calls[asked:]
    bird_copies = variations.copies_of(["Bird"])
    out["batch"] = {
        "outcome": list(session.last_outcome()),
        "calls": batch_calls,
        "flag": {"frames": _frames(targets, "Flag"), "record": bw.animation_info(flag),
                 "sent": _sent(("Flag",))["Flag"]},
        "bird_animated": bw.animation_info(bird) is not None,
        "bird_copies": sorted((c["aam_take"], c["aam_seed"]) for c in bird_copies),
        "bird_copies_animated": all(bw.animation_info(c) is not None for c in bird_copies),
        "items": [dict(name=i.object_name, **i.settings()) for i in session.load_queue().items]}
    session.forget_client()
    return out


# ============================================================================ tests

def _expected(sent: dict, model_dir, names, **options) -> list[dict]:
    """The backend's own takes for the request the add-on sent: {name: frames in the object's
    space} per take."""
    from aam_seam.arrays import padded_polygons
    from animateanymesh_addon import writeback as wb
    from backend.model_folder import load_model
    from backend.pipeline import animate

    verts, flats, sizes, offset = [], [], [], 0
    for name in names:
        one = sent[name]
        verts.append(wb.to_world_space(np.asarray(one["rest"], np.float32), np.asarray(one["matrix"])))
        flats.append(np.asarray(one["flat"]) + offset)
        sizes.append(np.asarray(one["sizes"]))
        offset += len(one["rest"])
    faces = padded_polygons(np.concatenate(flats), np.concatenate(sizes))
    options.setdefault("seed", SEED)
    result = animate(np.concatenate(verts), faces, options.pop("prompt", PROMPT),
                     model=load_model(Path(model_dir), "cpu"), steps=options.pop("steps", STEPS),
                     num_traj=TOKENS, device="cpu", **options)
    out = []
    for take in result.takes:
        parts = wb.split_frames(take, [len(sent[n]["rest"]) for n in names])
        out.append({n: wb.to_object_space(p, np.asarray(sent[n]["matrix"])) for n, p in zip(names, parts)})
    return out


@pytest.fixture(scope="module")
def blender_args(tmp_path_factory, tiny_model_dir) -> dict:
    from blender_util import build_extension_zip

    zip_path = build_extension_zip(tmp_path_factory.mktemp("dist"))
    # the tiny model with a short schedule of its own (official: 64 grid points), which the
    # Reference preset runs: a reference take then costs what a draft does (runs that set Steps
    # do not use it)
    import json
    import shutil

    model_dir = tmp_path_factory.mktemp("model") / "tiny_short_schedule"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["sampler"]["steps"] = REFERENCE_STEPS
    (model_dir / "config.json").write_text(json.dumps(config))
    return {"zip_path": str(zip_path), "python": sys.executable, "model_dir": str(model_dir)}


def test_chain_loop_and_mask_through_the_animate_operator(blender_args):
    r = run_in_blender(MODULE, "scenario_chain_loop_mask", **blender_args)
    sent, model = r["sent"], blender_args["model_dir"]

    chain = r["chain"]
    assert chain["call"]["then"] == [THEN] and chain["call"]["loop"] is None
    frames = np.asarray(chain["frames"])
    assert frames.shape[0] == 2 * T - 1  # the seam frame is shared
    expected = _expected(sent, model, ("A",), then=[THEN])[0]["A"]
    np.testing.assert_allclose(frames, expected, rtol=0, atol=2e-5)
    assert "31 frames on 1-31" in chain["message"]
    assert chain["call"]["quality"] is None  # the default preset is not sent: the backend's applies
    assert r["repeat"]["call"]["then"] == [THEN, PROMPT, THEN] and r["repeat"]["num_frames"] == 4 * T - 3

    ui = r["quality_ui"]
    from aam_seam.limits import DEFAULT_QUALITY, QUALITY_PRESETS

    assert [(i, n) for i, n, _ in ui["items"]] == [(p.upper(), p.capitalize()) for p in QUALITY_PRESETS]
    assert [d.lower() for _, _, d in ui["items"]] == list(QUALITY_PRESETS.values())
    assert ui["default"] == DEFAULT_QUALITY.upper()
    assert all("replace" in ui["tooltips"][n] and "Quality" in ui["tooltips"][n]
               for n in ("steps", "solver"))
    drawn = ui["drawn"]
    assert drawn.index("quality") < drawn.index("guidance") < drawn.index("steps") < drawn.index("solver")
    draft, reference = r["draft"], r["reference"]
    assert (draft["call"]["quality"], draft["call"]["steps"], draft["call"]["solver"]) == (
        "draft", None, None)
    assert reference["call"]["quality"] == "reference" and reference["asked"] == draft["asked"] + 1
    takes = {}
    for name, run in (("draft", draft), ("reference", reference)):
        takes[name] = np.asarray(run["frames"])
        expected = _expected(sent, model, ("A",), steps=None, quality=name)[0]["A"]
        np.testing.assert_allclose(takes[name], expected, rtol=0, atol=2e-5, err_msg=name)
    assert np.abs(takes["draft"] - takes["reference"]).max() > 1e-4  # the presets do differ

    loop = r["loop"]
    frames = np.asarray(loop["frames"])
    period = T - 1  # frame 15 of the model's take is frame 0 again
    assert loop["call"]["loop"] == "blend" and frames.shape[0] == period + 1
    np.testing.assert_array_equal(frames[-1], frames[0])  # written closed: the end is the start
    expected = _expected(sent, model, ("A",), loop="blend")[0]["A"]
    np.testing.assert_allclose(frames[:-1], expected, rtol=0, atol=2e-5)
    assert loop["range"] == [1, period]  # exactly one period: the timeline wraps onto frame 0
    assert (loop["record"]["loop"], loop["record"]["period"]) == ("blend", period)
    assert f"a {period}-frame loop on 1-{period}" in loop["message"]
    cross = r["crossfade"]
    assert cross["call"]["loop"] == "crossfade" and cross["call"]["frames"] == 20
    assert cross["num_frames"] == 21 and cross["range"] == [5, 24]

    mask = r["mask"]
    weights = {"A": np.r_[np.zeros(10), np.full(5, 0.5), np.ones(5), np.zeros(6)],
               "B": np.r_[np.zeros(12), np.ones(4), np.zeros(6)]}
    assert mask["call"]["mask"] == np.r_[weights["A"], weights["B"]].tolist()  # A's, then B's
    for name in ("A", "B"):
        frames = np.asarray(mask["frames"][name], dtype=np.float64)
        diagonal = np.linalg.norm(np.ptp(frames[0], axis=0))
        moved = np.abs(frames - frames[:1]).max(axis=(0, 2))
        assert moved[weights[name] == 0].max() < 1e-6 * diagonal, name  # pinned
        assert moved[weights[name] == 1].min() > 1e-3 * diagonal, name   # free

    combined = r["combined"]
    call = combined["call"]
    assert (call["then"], call["loop"], call["frames"], call["strength"], call["mask_falloff"],
            call["keep_shape"]) == ([THEN], "blend", 24, 0.5, pytest.approx(0.2), "on")
    assert r["mask"]["call"]["keep_shape"] is None        # the default is the model's own
    expected = _expected(sent, model, ("A",), then=[THEN], loop="blend", frames=24, strength=0.5,
                         mask=weights["A"], mask_falloff=0.2, keep_shape="on")[0]["A"]
    frames = np.asarray(combined["frames"])
    assert frames.shape[0] == 25
    np.testing.assert_allclose(frames[:-1], expected, rtol=0, atol=2e-5)

    f = r["refusals"]
    assert f["missing group"][0] == "bad_mask"
    assert "'B' has no vertex group 'Top'" in f["missing group"][1] and "Mask" in f["missing group"][1]
    assert "repeat must be between 1 and 16 (got 0)" in f["repeat 0"][1]
    assert "variations must be between 1 and 16 (got 40)" in f["variations 40"][1]
    code, message = f["empty chained prompt"]
    assert code == "bad_prompt" and "chained prompt 3 is empty" in message
    assert "mask falloff must be between 0 and 1" in f["falloff 3"][1]
    assert "at most 16 prompts (got 18)" in f["chain too long"][1]
    assert f["quality bogus"][0] == "argument" and "enum \"BOGUS\" not found in" in f["quality bogus"][1]
    assert f["quality options"] == ["bad_input", "unknown quality 'bogus'; choose draft, standard, "
                                    "reference."]
    for code, message in f.values():
        assert code and "\n" not in message and "Traceback" not in message
    assert r["unchanged"]


def test_variations_keep_this_one_undo_and_batch_overrides(blender_args):
    r = run_in_blender(MODULE, "scenario_variations_and_batch", **blender_args)
    sent, model = r["sent"], blender_args["model_dir"]

    v = r["variations"]
    assert v["call"]["variations"] == 3 and v["in_scene"]
    assert v["original_kept"] and v["original_seed"] == SEED + 10  # its own earlier animation
    copies = v["copies"]
    assert [(c["of"], c["take"], c["seed"]) for c in copies] == [("A", k, SEED + k - 1) for k in (1, 2, 3)]
    assert all(c["in_collections"] == ["Variations"] and not c["shared_mesh"] for c in copies)
    for k, c in enumerate(copies, start=1):  # side by side along X, 1.25 widths apart
        np.testing.assert_allclose(c["offset"], [1.25 * v["width"] * k, 0, 0], atol=1e-5)
    takes = [np.asarray(c["frames"]) for c in copies]
    assert all(t.shape == (T, len(sent["A"]["rest"]), 3) for t in takes)
    assert np.abs(takes[0] - takes[1]).max() > 1e-4 and np.abs(takes[1] - takes[2]).max() > 1e-4
    # take 2 is what the backend makes alone with seed SEED + 1
    alone = _expected(sent, model, ("A",), seed=SEED + 1)[0]["A"]
    np.testing.assert_allclose(takes[1], alone, rtol=0, atol=2e-5)
    assert "Made 3 variations of A" in v["message"] and "seeds 7, 8, 9" in v["message"]
    drawn = [name for kind, name in r["panel"]]
    assert "animateanymesh.keep_variation" in drawn and "animateanymesh.discard_variations" in drawn
    assert "Variation: take 2 (seed 8) of 'A'" in drawn

    kept = r["kept"]
    np.testing.assert_array_equal(kept["frames"], kept["chosen"])
    assert kept["record"]["mode"] == "SHAPE_KEYS" and kept["record"]["seed"] == SEED + 1
    assert not kept["collection"] and kept["copies"] == [] and kept["meshes_left"] == []
    assert "Kept take 2 (seed 8) of 'A' on A" in kept["message"]
    assert r["undone"] == {"same": True, "copies": 3}
    assert r["kept_cache"] == {"mode": "POINT_CACHE", "same": True, "plays": True, "copies": 0,
                               "modifiers": ["MESH_CACHE"]}
    assert all(c["plays"] for c in copies)
    assert r["discarded"] == {"collection": False, "objects": ["A", "B"], "original_kept": True,
                              "original_plays": True}

    bad = r["bad_override"]
    assert bad["refusal"][0] == "bad_input" and bad["unchanged"], bad
    assert "'Bird' has custom property aam_loop = 'sideways'" in bad["refusal"][1]
    assert "blend" in bad["refusal"][1] and "off" in bad["refusal"][1]
    assert r["bad_group"][0] == "bad_mask" and "'Flag' has no vertex group 'Nope'" in r["bad_group"][1]

    b = r["batch"]
    assert b["outcome"][0] == "" and "2 done, 0 failed" in b["outcome"][1]
    flag_call, bird_call = b["calls"]
    assert flag_call["then"] == [THEN] and flag_call["loop"] == "blend"
    assert flag_call["mask"] == [0.0] * 8 + [1.0] * 4 + [0.0] * 6
    assert bird_call["variations"] == 2 and bird_call["then"] == [] and bird_call["mask"] is None
    assert flag_call["quality"] == bird_call["quality"] == "draft"
    flag = np.asarray(b["flag"]["frames"])
    assert flag.shape[0] == 2 * T - 1 and b["flag"]["record"]["period"] == 2 * T - 2  # closed loop
    np.testing.assert_array_equal(flag[-1], flag[0])
    assert not b["bird_animated"] and b["bird_copies_animated"]
    assert b["bird_copies"] == [[1, SEED], [2, SEED + 1]]
    items = {i["name"]: i for i in b["items"]}
    assert items["Flag"]["chain"] == [THEN] and items["Flag"]["loop"] == "blend"
    assert items["Bird"]["variations"] == 2 and items["Bird"]["chain"] == []


def test_batch_overrides_are_parsed_with_the_fix():
    """The custom-property overrides of Animate Collection, without Blender."""
    from aam_seam import limits
    from animateanymesh_addon import batch

    defaults = {"chain": ["x"], "repeat": 1, "loop": None, "mask": "", "mask_falloff": None,
                "variations": 1, "bones": 16, "keep_shape": None}
    assert batch.object_settings("A", {}, defaults) == defaults
    got = batch.object_settings("A", {"aam_then": "jump\n\n  spin \n", "aam_repeat": "2",
                                      "aam_loop": "Crossfade", "aam_mask": " Head ",
                                      "aam_mask_falloff": 0.25, "aam_variations": 3,
                                      "aam_bones": "8", "aam_keep_shape": " On"}, defaults)
    assert got == {"chain": ["jump", "spin"], "repeat": 2, "loop": "crossfade", "mask": "Head",
                   "mask_falloff": 0.25, "variations": 3, "bones": 8, "keep_shape": "on"}
    assert batch.object_settings("A", {"aam_keep_shape": "Model"}, {**defaults, "keep_shape": "on"})[
        "keep_shape"] is None
    assert batch.object_settings("A", {"aam_then": "", "aam_loop": "off"}, {**defaults, "loop": "blend"})[
        "chain"] == [] and batch.object_settings("A", {"aam_loop": "off"}, {**defaults, "loop": "blend"})[
        "loop"] is None
    for props, words in [({"aam_loop": "sideways"}, "aam_loop = 'sideways': use blend"),
                         ({"aam_variations": 40}, "aam_variations = 40: use a whole number from 1 to 16"),
                         ({"aam_repeat": 0}, "aam_repeat = 0"), ({"aam_repeat": 1.5}, "aam_repeat = 1.5"),
                         ({"aam_mask_falloff": "nan"}, "aam_mask_falloff = 'nan': use a number from 0 to 1"),
                         ({"aam_then": 3}, "aam_then = 3: make it text"),
                         ({"aam_bones": 0}, "aam_bones = 0: use a whole number from 1 to 256"),
                         ({"aam_keep_shape": "rigid"}, "aam_keep_shape = 'rigid': use off, auto, on or model"),
                         ({"aam_keep_shape": 1}, "aam_keep_shape = 1: use off, auto, on or model")]:
        with pytest.raises(batch.QueueError, match="^'A' has custom property " + words.replace("(", r"\(")):
            batch.object_settings("A", props, defaults)
    # items keep their settings through the queue file, and older files without them still load
    queue = batch.BatchQueue.for_objects([("A", "wave", got), ("B", "")], "sway")
    loaded = batch.BatchQueue.from_dict(queue.to_dict())
    then = [limits.chained(item.prompt, item.chain, item.repeat) for item in loaded.items]
    assert then == [["jump", "spin", "wave", "jump", "spin"], []] and loaded.items[1].variations == 1
    old = queue.to_dict()
    for item in old["items"]:
        for name in ("chain", "repeat", "loop", "mask", "mask_falloff", "variations", "bones", "keep_shape"):
            del item[name]
    assert batch.BatchQueue.from_dict(old).items[0].settings() == batch.QueueItem("A", "p").settings()

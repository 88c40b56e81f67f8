"""The add-on as a user runs it: the built zip installed into real Blender (the bpy wheel), its
preferences pointed at this repository's Python and a real tiny model, then Animate, undo,
cancel, a killed backend, bake, and a batch with a failing item.

Pure parts (queue, interpreter discovery, background tasks) are tested first, in this process.
Blender scenarios run in fresh subprocesses (blender_util); each returns plain data that the
test compares with the backend's own answer, computed here with `backend.pipeline.animate` on
the same vertices, faces, seed and options.

Blender without a window has no event loop, so the modal path (invoke + timer) cannot run
here; bpy.ops calls execute, which drives the same controller with the same poll() calls.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from blender_util import build_extension_zip, point_set_distance, requires_bpy, run_in_blender

MODULE = "test_blender_addon"
PACKAGE = "bl_ext.user_default.animateanymesh"
PROMPT = "a flag waves in the wind"
SEED, STEPS, TOKENS = 7, 3, 32


# ============================================================================ pure: batch queue

def test_queue_statuses_retries_and_fatal_failures(tmp_path):
    from animateanymesh_addon import batch

    q = batch.BatchQueue.for_objects([("A", "a bird flaps"), ("B", ""), ("C", "  ")], "sway",
                                     max_attempts=2, collection="Crowd")
    assert [i.prompt for i in q.items] == ["a bird flaps", "sway", "sway"]
    a, b, c = q.items
    q.start(a)
    assert q.running() is a and a.attempts == 1
    # a crash of the backend is retried while attempts remain, then fails for good
    assert q.fail(a, "backend_died", "the backend stopped") is True and a.status == "queued"
    q.start(a)
    assert q.fail(a, "backend_died", "again") is False
    assert (a.status, a.error_code, a.error) == ("failed", "backend_died", "again")
    # a problem of the input fails at once: retrying cannot help
    q.start(b)
    assert q.fail(b, "bad_mesh", "mesh has NaN") is False and b.status == "failed"
    # the backend could not start at all: back to the queue without using up an attempt
    q.start(c)
    q.requeue(c, "backend_not_set_up", "set it up")
    assert (c.status, c.attempts) == ("queued", 0)
    assert q.next_queued() is c and not q.finished
    assert q.cancel_all() == 1 and c.status == "cancelled" and q.finished
    assert q.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 2, "cancelled": 1}
    assert q.retry_failed() == 3 and all(i.status == "queued" and i.attempts == 0 for i in q.items)
    q.start(a)
    q.done(a, seed=5, seconds=1.5)
    assert (a.status, a.seed) == ("done", 5)

    with pytest.raises(batch.QueueError, match="not queued"):
        q.start(a)


def test_queue_without_any_prompt_fails_its_item_with_the_fix():
    from animateanymesh_addon import batch

    q = batch.BatchQueue.for_objects([("A", ""), ("B", "jump")], "")
    assert q.items[0].status == "failed" and "aam_prompt" in q.items[0].error
    assert q.items[1].status == "queued"


def test_queue_file_round_trip_and_interrupted_items(tmp_path):
    from animateanymesh_addon import batch

    q = batch.BatchQueue.for_objects([("A", "x"), ("B", "y")], "", collection="C")
    q.start(q.items[0])
    path = q.save(tmp_path / "queues" / "q.json")
    loaded = batch.BatchQueue.load(path)
    assert loaded.to_dict() == q.to_dict()
    # Blender stopped while A ran: it goes back to the queue, saying why
    assert loaded.interrupted() == 1
    assert loaded.items[0].status == "queued" and "interrupted" in loaded.items[0].error

    (tmp_path / "bad.json").write_text(json.dumps({**q.to_dict(), "version": 99}))
    with pytest.raises(batch.QueueError, match="version 99"):
        batch.BatchQueue.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(batch.QueueError, match="clear the queue"):
        batch.BatchQueue.load(tmp_path / "junk.json")

    one = batch.queue_file(tmp_path, "/projects/shot 010.blend")
    other = batch.queue_file(tmp_path, "/other/shot 010.blend")
    assert one.parent == tmp_path and one.name.startswith("shot_010-") and one != other
    assert batch.queue_file(tmp_path, "") == tmp_path / "unsaved.json"


# ============================================================================ pure: setup

def test_auto_finds_the_env_var_then_the_checkout_venv_then_the_setup_env(tmp_path):
    from animateanymesh_addon import backend_setup as bs

    root, env_dir = tmp_path / "repo", tmp_path / "user" / "backend-env"
    dev, setup = bs.venv_python(root / ".venv"), bs.venv_python(env_dir)
    with pytest.raises(bs.SetupError, match="Set up backend"):
        bs.resolve_backend_python("AUTO", "", root, env_dir, environ={})
    for exe in (dev, setup):
        exe.parent.mkdir(parents=True)
        exe.write_text("")
    assert bs.resolve_backend_python("AUTO", "", root, env_dir, environ={}) == bs.Interpreter(
        str(dev), "development .venv")
    dev.unlink()
    # an environment whose set-up never finished is not used: it is shown as incomplete
    with pytest.raises(bs.SetupError, match="incomplete .*Repair"):
        bs.resolve_backend_python("AUTO", "", root, env_dir, environ={})
    (env_dir / bs.VERIFIED_MARKER).write_text("verified")
    assert bs.resolve_backend_python("AUTO", "", root, env_dir, environ={}).source == "Set up backend"
    custom = tmp_path / "py"
    custom.write_text("")
    found = bs.resolve_backend_python("AUTO", "", root, env_dir, environ={bs.ENV_VAR: str(custom)})
    assert found == bs.Interpreter(str(custom), bs.ENV_VAR)
    # an explicit path never falls back silently to another environment
    with pytest.raises(bs.SetupError, match="does not exist"):
        bs.resolve_backend_python("PATH", str(tmp_path / "typo"), root, env_dir, environ={})
    with pytest.raises(bs.SetupError, match="no backend Python"):
        bs.resolve_backend_python("PATH", "", root, env_dir, environ={})
    assert bs.resolve_backend_python("PATH", str(custom), root, env_dir).source == "preferences"


def test_setup_python_prefers_311_and_falls_back_to_blenders_own():
    from animateanymesh_addon import backend_setup as bs

    versions = {"/usr/bin/python3.11": (3, 11), "/usr/bin/python3": (3, 8), "/blender/python": (3, 11)}
    which = {"python3.11": "/usr/bin/python3.11", "python3": "/usr/bin/python3"}.get
    assert bs.find_setup_python("", "/blender/python", lambda c: versions.get(c[0]), which) == [
        "/usr/bin/python3.11"]
    only_old = {"python3": "/usr/bin/python3"}.get
    assert bs.find_setup_python("", "/blender/python", lambda c: versions.get(c[0]), only_old) == [
        "/blender/python"]
    with pytest.raises(bs.SetupError, match=r"python3 \(3.8\)"):
        bs.find_setup_python("", None, lambda c: versions.get(c[0]), only_old)
    # the real thing: this interpreter is 3.11+
    assert bs.python_version([sys.executable]) >= (3, 11)


def test_setup_steps_and_progress_parsers(tmp_path):
    from animateanymesh_addon import backend_setup as bs

    req = tmp_path / "requirements.txt"
    req.write_text("# backend\ntorch==2.14.1\nnumpy>=1.26  # arrays\n\n-r other.txt\nsafetensors\n")
    assert bs.requirement_count(req) == 3
    env_dir = tmp_path / "env"
    steps = bs.setup_steps(["python3.11"], env_dir, req, "https://example.invalid/whl")
    assert [s.label for s in steps] == ["Creating the environment", "Installing packages",
                                        "Checking the backend", "Marking the environment verified"]
    assert steps[0].argv == ["python3.11", "-m", "venv", str(env_dir)]
    assert steps[1].argv[-2:] == ["--extra-index-url", "https://example.invalid/whl"]
    assert str(req) in steps[1].argv and steps[1].argv[0] == str(bs.venv_python(env_dir))
    bs.venv_python(env_dir).parent.mkdir(parents=True)
    bs.venv_python(env_dir).write_text("")
    assert [s.label for s in bs.setup_steps(["py"], env_dir, req)][0] == "Installing packages"
    with pytest.raises(bs.SetupError, match="reinstall"):
        bs.setup_steps(["py"], env_dir, tmp_path / "missing.txt")
    ray = tmp_path / "requirements-ray.txt"
    ray.write_text("ray==2.60.0\n")
    (_, install, *_) = bs.setup_steps(["py"], tmp_path / "env2", req, extras=[ray])
    assert install.argv[install.argv.index(str(req)) + 1:][:2] == ["-r", str(ray)]
    assert install.state["expected"] == 4         # the optional extra's packages count too

    pip = steps[1]
    values = [bs.pip_progress(line, pip) for line in
              ["Collecting torch==2.14.1", "  Downloading torch.whl", "Collecting numpy",
               "Requirement already satisfied: safetensors", "Installing collected packages: a, b",
               "Successfully installed a b"]]
    assert values[1] is None
    numbers = [v for v in values if v is not None]
    assert numbers == sorted(numbers) and numbers[-1] == 1.0 and numbers[2] < 0.8

    dl = bs.download_steps("/py", tmp_path)[0]
    assert dl.argv == ["/py", "-m", "backend", "download-official", "--cache", str(tmp_path)]
    seq = [bs.download_progress(line, dl) for line in
           ["dvae_f.pth:  50%|#####     | 1M/2M", "dvae_f.pth: 100%|##########| 2M/2M",
            "rf_epoch_f.pth:  10%|#   |", "no bar here"]]
    assert seq[0] == pytest.approx(0.125) and seq[1] == pytest.approx(0.25)
    assert seq[2] == pytest.approx((1 + 0.1) / 4) and seq[3] is None


def test_background_task_reports_progress_errors_and_cancels(tmp_path):
    from animateanymesh_addon import backend_setup as bs

    def fraction_of(line, step):
        return float(line.split()[-1]) if line.startswith("at") else None

    ok = bs.BackgroundTask("Demo", [
        bs.Step("one", [sys.executable, "-c", "print('at 0.5'); print('at 1.0')"], fraction_of),
        bs.Step("two", [sys.executable, "-c", "import os; print(os.environ.get('PYTHONPATH'))"]),
    ], cwd=tmp_path, log_path=tmp_path / "logs" / "demo.log").start()
    assert ok.wait(30) == "done" and ok.fraction == 1.0
    assert ok.last_line == str(tmp_path)  # the backend root is the children's PYTHONPATH
    log = (tmp_path / "logs" / "demo.log").read_text()
    assert "at 0.5" in log and "==== done" in log

    said = bs.BackgroundTask("Demo", [bs.Step("says", [
        sys.executable, "-c", "print('error: the disk is full'); print('see the manual'); raise SystemExit(2)"])]).start()
    assert said.wait(30) == "error" and "(error: the disk is full)" in said.error  # the line that says why

    bad = bs.BackgroundTask("Demo", [
        bs.Step("fails", [sys.executable, "-c", "print('oh no'); raise SystemExit(3)"]),
        bs.Step("never", [sys.executable, "-c", "print('ran')"])], log_path=tmp_path / "b.log").start()
    assert bad.wait(30) == "error"
    assert "fails failed with exit status 3" in bad.error and "oh no" in bad.error
    assert "ran" not in (tmp_path / "b.log").read_text()

    slow = bs.BackgroundTask("Demo", [
        bs.Step("sleeps", [sys.executable, "-c", "import time; print('go', flush=True); time.sleep(60)"]),
        bs.Step("never", [sys.executable, "-c", "print('ran')"])]).start()
    deadline = time.monotonic() + 20
    while slow.last_line != "go" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "sleeps" in slow.text
    started = time.monotonic()
    slow.cancel()
    assert slow.wait(10) == "cancelled" and time.monotonic() - started < 5

    missing = bs.BackgroundTask("Demo", [bs.Step("x", [str(tmp_path / "no-such-python")])]).start()
    assert missing.wait(10) == "error" and "cannot run" in missing.error


# ============================================================================ inside Blender

def _mesh(name, nx, ny, location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1), wave=0.05):
    """Quads, one quad split into two triangles, and a hexagon n-gon on the side."""
    import bpy

    verts = [(x * 0.5, y * 0.4, wave * x * y) for y in range(ny) for x in range(nx)]
    quads = [(y * nx + x, y * nx + x + 1, (y + 1) * nx + x + 1, (y + 1) * nx + x)
             for y in range(ny - 1) for x in range(nx - 1)]
    a, b, c, d = quads.pop()
    faces = quads + [(a, b, c), (a, c, d)]
    base = len(verts)
    verts += [(nx * 0.5 + 0.6 + 0.5 * np.cos(t), 0.4 + 0.5 * np.sin(t), 0.1 * np.sin(2 * t))
              for t in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    faces.append(tuple(range(base, base + 6)))
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    obj.location, obj.rotation_euler, obj.scale = location, rotation, scale
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _install(zip_path: str, python: str, model_dir: str):
    """Install the zip as a user does, enable it, point its preferences at our backend + model,
    and empty the startup scene (read_factory_settings would disable the add-on again)."""
    import bpy

    assert bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True) == {"FINISHED"}
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.python_mode, prefs.python_path = "PATH", python
    prefs.model, prefs.model_dir, prefs.device = "DIRECTORY", model_dir, "CPU"
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    s = bpy.context.scene.animateanymesh
    s.prompt, s.seed, s.steps, s.num_traj, s.keep_rest = PROMPT, SEED, STEPS, TOKENS, False
    return (sys.modules[PACKAGE + ".session"], sys.modules[PACKAGE + ".blender_writeback"],
            sys.modules[PACKAGE + ".targets"])


def _two_objects():
    import bpy

    a = _mesh("A", 5, 4)
    b = _mesh("B", 4, 4, location=(1.0, -2.0, 0.5), rotation=(0.3, -0.2, 0.7), scale=(1.5, 0.8, 1.2),
              wave=-0.08)
    bpy.context.view_layer.update()
    for obj in (a, b):
        obj.select_set(True)
    bpy.context.view_layer.objects.active = a
    return a, b


def _sent(obj) -> dict:
    """What the add-on sends for `obj`: rest coordinates, polygons, transform."""
    mesh = obj.data
    sizes = [p.loop_total for p in mesh.polygons]
    flat = [v for p in mesh.polygons for v in p.vertices]
    return {"rest": [v.co[:] for v in mesh.vertices], "flat": flat, "sizes": sizes,
            "matrix": [list(row) for row in obj.matrix_world]}


def _state(names) -> dict:
    """The parts of the scene an Animate may change."""
    import bpy

    out = {"objects": sorted(o.name for o in bpy.data.objects), "actions": len(bpy.data.actions)}
    for name in names:
        obj = bpy.data.objects[name]
        key = obj.data.shape_keys
        out[name] = {"keys": [kb.name for kb in key.key_blocks] if key else [],
                     "modifiers": [m.type for m in obj.modifiers],
                     "record": obj.get("animateanymesh") is not None,
                     "co": [v.co[:] for v in obj.data.vertices]}
    return out


def _when_sampling(session, action, timeout: float = 60.0):
    """Run `action(run)` from another thread as soon as the running Animate samples (the
    operator's execute blocks this thread, like a user's click on Cancel from the UI)."""
    done = {}

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = session.active_run()
            if run is not None and run.stage == "sample":
                done["progress"] = run.job.progress
                action(run)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, done


def scenario_animate_undo_and_bake(zip_path: str, python: str, model_dir: str, out_dir: str) -> dict:
    import bpy

    session, bw, targets = _install(zip_path, python, model_dir)
    a, b = _two_objects()
    sent = {"A": _sent(a), "B": _sent(b)}
    bpy.ops.ed.undo_push(message="scene built")
    before = _state(["A", "B"])

    # Animate both selected meshes as one (the default), shape keys, one undo step
    assert bpy.ops.animateanymesh.animate("EXEC_DEFAULT", True) == {"FINISHED"}
    assert session.last_outcome()[0] == ""
    keys = {n: targets.animation_frames(bpy.data.objects[n]).tolist() for n in ("A", "B")}
    info = bw.animation_info(bpy.data.objects["A"])
    assert info["mode"] == "SHAPE_KEYS" and info["frame_start"] == 1.0
    warned = info.get("warnings", "")
    assert bpy.data.objects["A"].data.shape_keys.key_blocks[0].name == "Basis"

    bpy.ops.ed.undo()
    after_undo = _state(["A", "B"])

    # the solvers the backend listed reach the panel's drop-down; one it lacks is refused by name
    props = sys.modules[PACKAGE + ".props"]
    offered = [name for name, _ in props.solver_search(None, bpy.context, "")]
    try:
        bpy.ops.animateanymesh.animate("EXEC_DEFAULT", True, solver="no-such-solver")
    except RuntimeError:
        pass  # an operator's ERROR report
    refused = list(session.last_outcome())
    after_refusal = _state(["A", "B"])

    # point cache mode, starting from the rest pose, written from the same operator
    assert bpy.ops.animateanymesh.animate("EXEC_DEFAULT", True, mode="POINT_CACHE", keep_rest=True,
                                          frame_start=3) == {"FINISHED"}
    pc2 = {}
    for name in ("A", "B"):
        obj = bpy.data.objects[name]
        mod = obj.modifiers[0]
        assert mod.type == "MESH_CACHE" and Path(mod.filepath).is_file()
        assert Path(mod.filepath).is_relative_to(session.user_dir("point_caches"))
        pc2[name] = bw.wb.read_pc2(mod.filepath)[0].tolist()

    # the same request written again with other timing: the kept frames, no backend job
    session.shutdown_backend()
    started = time.monotonic()
    assert bpy.ops.animateanymesh.animate("EXEC_DEFAULT", True, frame_start=11,
                                          frame_step=2.0) == {"FINISHED"}
    rewrite_s = time.monotonic() - started
    assert not session.current_client().is_alive()  # nothing was started
    rewritten = targets.animation_frames(bpy.data.objects["A"]).tolist()
    timing = bw.animation_info(bpy.data.objects["A"])
    assert (timing["frame_start"], timing["frame_step"], timing["mode"]) == (11.0, 2.0, "SHAPE_KEYS")

    # bake from the operator and read the file back: frame count and positions
    glb = Path(out_dir) / "baked.glb"
    assert bpy.ops.animateanymesh.export_animation(filepath=str(glb), file_format="GLB") == {"FINISHED"}
    expected_world = {}
    scene = bpy.context.scene
    for t in (11, 21, 41):
        scene.frame_set(t)
        expected_world[t] = {n: _world_positions(bpy.data.objects[n]) for n in ("A", "B")}
    bpy.ops.object.select_all(action="DESELECT")
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.import_scene.gltf(filepath=str(glb))
    imported = {o.name.split(".")[0]: o for o in bpy.data.objects if o.type == "MESH"}
    frame_range = tuple(imported["A"].data.shape_keys.animation_data.action.frame_range)
    morphs = len(imported["A"].data.shape_keys.key_blocks) - 1
    errors = {}
    for t, per_object in expected_world.items():
        scene.frame_set(t)
        for name, expected in per_object.items():
            errors[f"{name}@{t}"] = point_set_distance(_world_positions(imported[name]), expected)
    session.forget_client()
    remembered = [s["name"] for s in session.known_solvers()]  # no backend now: the kept list
    return {"remembered": remembered, "sent": sent, "keys": keys, "pc2": pc2, "rewritten": rewritten, "rewrite_s": rewrite_s,
            "warned": warned, "warned_on_rewrite": timing.get("warnings", ""),
            "offered": offered, "refused": refused, "after_refusal": after_refusal,
            "before": before, "after_undo": after_undo, "frame_range": list(frame_range),
            "morphs": morphs, "errors": errors}


def _world_positions(obj):
    from blender_util import evaluated_positions

    return evaluated_positions(obj, bpy_frame(), world=True)


def bpy_frame():
    import bpy

    return bpy.context.scene.frame_current


def scenario_cancel_kill_and_recover(zip_path: str, python: str, model_dir: str) -> dict:
    import os
    import signal

    import bpy

    session, bw, targets = _install(zip_path, python, model_dir)
    _two_objects()
    before = _state(["A", "B"])
    s = bpy.context.scene.animateanymesh
    s.steps = 400  # long enough to stop halfway

    # Cancel (what Esc and the Cancel button do) as soon as sampling starts
    session.client().start()  # warm, so the timing below measures the cancel, not the start
    watcher, seen = _when_sampling(session, lambda run: run.request_cancel())
    started = time.monotonic()
    result = bpy.ops.animateanymesh.animate()
    cancel_s = time.monotonic() - started
    watcher.join()
    run = session.last_run()
    cancelled = {"result": sorted(result), "outcome": session.last_outcome()[0],
                 "progress": list(run.job.progress), "seen": list(seen["progress"]),
                 "state": _state(["A", "B"]) == before, "seconds": cancel_s}

    # Kill the backend mid-run: the operator reports the error, the scene stays as it was
    pid = session.current_client().pid
    watcher, seen = _when_sampling(session, lambda run: os.kill(pid, signal.SIGKILL))
    try:
        bpy.ops.animateanymesh.animate()
        message = ""
    except RuntimeError as exc:  # an ERROR report from an operator
        message = str(exc)
    watcher.join()
    killed = {"message": message, "outcome": session.last_outcome()[0],
              "state": _state(["A", "B"]) == before}

    # ... and the next Animate works, with a fresh backend process
    s.steps = STEPS
    assert bpy.ops.animateanymesh.animate() == {"FINISHED"}
    recovered = {"pid_changed": session.current_client().pid != pid,
                 "frames": len(targets.animation_frames(bpy.data.objects["B"]))}

    # one by one: a job per object, each alone; written together in the last step
    assert bpy.ops.animateanymesh.animate(together=False) == {"FINISHED"}
    separately = {"sent": {n: _sent(bpy.data.objects[n]) for n in ("A", "B")},
                  "frames": {n: targets.animation_frames(bpy.data.objects[n]).tolist() for n in ("A", "B")}}

    # Blender ends a modal Animate itself (a file is loaded): the run is abandoned at once,
    # nothing is written, and Animate is not blocked afterwards
    operators = sys.modules[PACKAGE + ".operators"]
    controller = sys.modules[PACKAGE + ".controller"]
    options, _ = operators.options_from_settings(bpy.context)
    options.steps = 400
    run = controller.AnimateRun([bpy.data.objects["A"]], options).start()
    session.set_active_run(run)
    while run.stage != "sample" and not run.poll():
        time.sleep(0.01)
    keys_before = [kb.name for kb in bpy.data.objects["A"].data.shape_keys.key_blocks]
    run.abandon()
    abandoned = {"state": run.state, "busy": session.busy_message(),
                 "unchanged": [kb.name for kb in bpy.data.objects["A"].data.shape_keys.key_blocks]
                 == keys_before,
                 "next": sorted(bpy.ops.animateanymesh.animate(seed=SEED + 1))}

    # refusals name the fix and change nothing
    refusals = {}
    for label, call in {
        "empty prompt": lambda: bpy.ops.animateanymesh.animate(prompt=" "),
        "no selection": lambda: (bpy.ops.object.select_all(action="DESELECT"),
                                 bpy.ops.animateanymesh.animate()),
        "not set up": lambda: (setattr(session.preferences(), "python_path", "/nowhere/python"),
                               bpy.ops.animateanymesh.animate(objects="A")),
    }.items():
        try:
            call()
            refusals[label] = ""
        except RuntimeError as exc:
            refusals[label] = str(exc)
    session.forget_client()
    return {"cancelled": cancelled, "killed": killed, "recovered": recovered, "refusals": refusals,
            "separately": separately, "abandoned": abandoned}


def scenario_batch(zip_path: str, python: str, model_dir: str) -> dict:
    import bpy

    session, bw, targets = _install(zip_path, python, model_dir)
    crowd = bpy.data.collections.new("Crowd")
    bpy.context.scene.collection.children.link(crowd)
    objects = [_mesh("Flag", 4, 3), _mesh("Bird", 5, 3, location=(4, 0, 0)),
               bpy.data.objects.new("Void", bpy.data.meshes.new("Void"))]
    for obj in objects:
        for coll in obj.users_collection:
            coll.objects.unlink(obj)
        crowd.objects.link(obj)
    objects[0]["aam_prompt"] = "a flag flutters"  # its own prompt; Bird takes the panel's
    bpy.context.scene.animateanymesh.batch_collection = crowd
    bpy.ops.ed.undo_push(message="scene built")

    assert bpy.ops.animateanymesh.animate_collection("EXEC_DEFAULT", True) == {"FINISHED"}
    outcome = session.last_outcome()
    saved = json.loads(session.queue_path().read_text())
    animated = {o.name: bw.animation_info(o) is not None for o in crowd.objects}
    flag = {"sent": _sent(bpy.data.objects["Flag"]),
            "frames": targets.animation_frames(bpy.data.objects["Flag"]).tolist()}
    frames = {n: len(targets.animation_frames(bpy.data.objects[n])) for n in ("Flag", "Bird")}

    # Retry Failed queues the failure again; Resume runs it and it fails the same way
    assert bpy.ops.animateanymesh.batch_retry_failed() == {"FINISHED"}
    assert [i.status for i in session.load_queue().items] == ["done", "done", "queued"]
    assert bpy.ops.animateanymesh.animate_collection(resume=True) == {"CANCELLED"}  # nothing written
    resumed = [(i.object_name, i.status) for i in session.load_queue().items]

    bpy.ops.ed.undo()  # the whole batch was one undo step
    undone = {o.name: bw.animation_info(o) is not None for o in bpy.data.collections["Crowd"].objects}
    session.forget_client()
    return {"outcome": list(outcome), "saved": saved, "animated": animated, "frames": frames,
            "resumed": resumed, "undone": undone, "flag": flag}


class _FakeLayout:
    """Records what a draw function asks of a UILayout and checks it against Blender's RNA:
    every property and operator it names must exist (typos would only show in the UI)."""

    def __init__(self, log):
        self.log = log
        self.use_property_split = self.use_property_decorate = False
        self.scale_y = 1.0

    def _child(self, *args, **kwargs):
        return _FakeLayout(self.log)

    row = column = box = split = _child

    def separator(self, *args, **kwargs):
        pass

    def label(self, text="", icon="NONE", **kwargs):
        import bpy

        icons = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()
        assert icon in icons, f"no icon {icon!r}"  # Blender would fail the whole panel's draw
        self.log.append(("label", text))

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.log.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        assert search_name in search_data.bl_rna.properties, f"no collection {search_name!r}"
        self.log.append(("prop", name))

    def template_list(self, list_type, list_id, data, name, active_data, active_name, **kwargs):
        import bpy

        ui_list = getattr(bpy.types, list_type)  # raises for an unregistered list
        assert name in data.bl_rna.properties and active_name in active_data.bl_rna.properties
        for index, item in enumerate(getattr(data, name)):
            ui_list.draw_item(None, None, _FakeLayout(self.log), data, item, 0, active_data,
                              active_name, index)
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        import bpy

        category, name = idname.split(".")
        op = getattr(getattr(bpy.ops, category), name)
        op.get_rna_type()  # raises for an unknown operator
        self.log.append(("operator", idname))

        class Props:
            pass

        return Props()


def scenario_ui_and_offline(zip_path: str, python: str, model_dir: str) -> dict:
    import bpy

    session, bw, targets = _install(zip_path, python, model_dir)
    addon = sys.modules[PACKAGE]
    panel = sys.modules[PACKAGE + ".panel"]
    prefs_module = sys.modules[PACKAGE + ".preferences"]
    operators = sys.modules[PACKAGE + ".operators"]
    _two_objects()
    log = []

    class Host:
        def __init__(self, target=None):
            self.layout = _FakeLayout(log)
            self._target = target

        def __getattr__(self, name):
            return getattr(self._target, name)

    # an animated active object whose run was warned about: the panel keeps showing the warning
    import numpy as np

    obj = bpy.data.objects["A"]
    bpy.context.view_layer.objects.active = obj
    rest = np.array([v.co[:] for v in obj.data.vertices], dtype=np.float32)
    targets.shape_keys.write_shape_keys(obj, np.repeat(rest[None], 4, axis=0), 1, 1.0)
    bw.note_warnings(obj, ["The model never saw the word 'xyzzy' in its training captions, so it may ignore it."])
    bpy.context.scene.animateanymesh.chain.add().prompt = "then it jumps"
    bpy.context.scene.animateanymesh.mask_group = "Top"
    for cls in panel.CLASSES:
        if hasattr(cls, "draw"):
            cls.draw(Host(), bpy.context)
    prefs = session.preferences()
    prefs.show_advanced = True
    prefs_module.AnimateAnyMeshPreferences.draw(Host(prefs), bpy.context)
    prefs.batch_runner, prefs.ray_address = "RAY", "head:6379"   # the cluster's settings appear
    prefs_module.AnimateAnyMeshPreferences.draw(Host(prefs), bpy.context)
    panel.VIEW3D_PT_animateanymesh_batch.draw(Host(), bpy.context)
    prefs.batch_runner = "LOCAL"

    # the status bar and redraw helpers the modal operators use
    class Source:
        text, fraction = "Animating: sampling the motion 3/8", 0.5

    operators.show_status(bpy.context, Source())
    operators.clear_status(bpy.context)
    operators.redraw(bpy.context)

    seed = bpy.context.scene.animateanymesh.seed
    assert bpy.ops.animateanymesh.new_seed() == {"FINISHED"}
    new_seed = bpy.context.scene.animateanymesh.seed
    assert bpy.ops.animateanymesh.release_memory() == {"FINISHED"}

    refusals = {}
    for name in ("setup_backend", "download_official"):
        try:
            getattr(bpy.ops.animateanymesh, name)()
            refusals[name] = ""
        except RuntimeError as exc:
            refusals[name] = str(exc)
    bpy.ops.preferences.addon_disable(module=PACKAGE)
    return {"log": log, "seed_changed": new_seed != seed, "refusals": refusals,
            "online": bpy.app.online_access, "unregistered": not hasattr(bpy.types,
                                                                         "VIEW3D_PT_animateanymesh"),
            "addon_file": addon.__file__}


def scenario_setup_and_download(zip_path: str, python: str, model_dir: str, work: str) -> dict:
    """Set up backend offline from a wheelhouse (online access off, as in the bpy wheel, and pip
    pointed at an index nobody answers): the requirements list is one tiny wheel and the check
    imports it, so everything runs for real but torch's download. Then the environment is made
    incomplete and removed, and Download official weights runs (online access granted by hand)."""
    import bpy

    from tiny_wheel import tiny_wheel

    session, bw, targets = _install(zip_path, python, model_dir)
    setup = sys.modules[PACKAGE + ".backend_setup"]
    root = Path(work) / "backend_root"
    root.mkdir()
    (root / "requirements.txt").write_text("tinydep==1.0\n")
    tiny_wheel(Path(work) / "wheelhouse")
    setup.CHECK_SCRIPT = "import tinydep; print('backend ok, torch test')"
    prefs = session.preferences()
    prefs.python_mode, prefs.backend_folder, prefs.setup_python = "AUTO", str(root), python
    prefs.wheelhouse = str(Path(work) / "wheelhouse")
    assert not session.online_access()

    assert bpy.ops.animateanymesh.setup_backend() == {"FINISHED"}
    task = session.last_task()
    env_python = setup.venv_python(session.setup_env_dir())
    found = session.backend_python()
    log = (session.user_dir("logs") / "setup.log").read_text()
    result = {"state": task.state, "steps": [s.label for s in task.steps], "env_python": str(env_python),
              "exists": env_python.is_file(), "found": [found.path, found.source],
              "mode": prefs.python_mode, "log_has_check": "backend ok, torch test" in log,
              "under_user_dir": str(env_python).startswith(str(session.user_dir())),
              "env_state": session.setup_env_state()}

    # Set up again, built as the button builds it, and stopped during its check (what a kill or
    # Cancel does): the environment shows as incomplete, is not used, and can be removed
    setup.CHECK_SCRIPT = "import time; time.sleep(60)"
    operator = bpy.types.ANIMATEANYMESH_OT_setup_backend
    task = operator.make_task(types.SimpleNamespace(title=operator.title), bpy.context).start()
    checking = [s.label for s in task.steps].index("Checking the backend")
    deadline = time.monotonic() + 60
    while task.step_index < checking and not task.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    task.cancel()
    result["stopped"] = task.wait(30)
    result["incomplete_state"] = session.setup_env_state()
    try:
        session.backend_python()
        result["incomplete_refusal"] = ""
    except setup.SetupError as exc:
        result["incomplete_refusal"] = str(exc)
    assert bpy.ops.animateanymesh.remove_backend_env() == {"FINISHED"}
    result["after_remove"] = session.setup_env_state()
    session.online_access = lambda: True

    # the download runs the backend's command with the backend we ship; offline it fails and
    # the operator says why, with the line the backend printed
    prefs.python_mode, prefs.python_path, prefs.backend_folder = "PATH", python, ""
    try:
        bpy.ops.animateanymesh.download_official()
        result["download"] = ""
    except RuntimeError as exc:
        result["download"] = str(exc)
    result["download_argv"] = session.last_task().steps[0].argv
    return result


# ============================================================================ tests

@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> str:
    return str(build_extension_zip(tmp_path_factory.mktemp("dist")))


@pytest.fixture(scope="module")
def blender_args(extension_zip, tiny_model_dir) -> dict:
    return {"zip_path": extension_zip, "python": sys.executable, "model_dir": str(tiny_model_dir)}


def expected_frames(sent: dict, model_dir, names=("A", "B"), prompt: str = PROMPT) -> dict:
    """What the backend itself answers for the meshes the add-on sent: world space, joined,
    then split and mapped back into each object's space."""
    from animateanymesh_addon import writeback as wb
    from backend.model_folder import load_model
    from backend.pipeline import animate
    from aam_seam.arrays import padded_polygons

    verts, flats, sizes, offset = [], [], [], 0
    for name in names:
        s = sent[name]
        verts.append(wb.to_world_space(np.asarray(s["rest"], np.float32), np.asarray(s["matrix"])))
        flats.append(np.asarray(s["flat"]) + offset)
        sizes.append(np.asarray(s["sizes"]))
        offset += len(s["rest"])
    faces = padded_polygons(np.concatenate(flats), np.concatenate(sizes))
    result = animate(np.concatenate(verts), faces, prompt, model=load_model(Path(model_dir), "cpu"),
                     seed=SEED, steps=STEPS, num_traj=TOKENS, device="cpu")
    parts = wb.split_frames(result.frames, [len(sent[n]["rest"]) for n in names])
    return {n: wb.to_object_space(p, np.asarray(sent[n]["matrix"])) for n, p in zip(names, parts)}


@pytest.mark.blender
@pytest.mark.slow
@requires_bpy
def test_animate_matches_the_backend_undoes_and_bakes(blender_args, tmp_path):
    from animateanymesh_addon import writeback as wb

    import shutil

    from backend.vocabulary import Vocabulary

    model = tmp_path / "model"  # the tiny model, with a vocabulary that lacks PROMPT's "wind"
    shutil.copytree(blender_args["model_dir"], model)
    Vocabulary.from_captions(["a flag waves in a breeze"]).save(model)
    blender_args = dict(blender_args, model_dir=str(model))
    r = run_in_blender(MODULE, "scenario_animate_undo_and_bake", out_dir=str(tmp_path), **blender_args)
    expected = expected_frames(r["sent"], blender_args["model_dir"])
    # the backend's warning stays on the animated object (and on the rewrite from the kept result)
    assert "'wind'" in r["warned"] and r["warned_on_rewrite"] == r["warned"]
    for name in ("A", "B"):
        keys = np.asarray(r["keys"][name])
        assert keys.shape == expected[name].shape == (16, len(r["sent"][name]["rest"]), 3)
        # vertex by vertex: the object's own order, quads and the n-gon included
        np.testing.assert_allclose(keys, expected[name], rtol=0, atol=2e-5)
        rest = np.asarray(r["sent"][name]["rest"], np.float32)
        np.testing.assert_allclose(np.asarray(r["pc2"][name]), wb.anchor_to_rest(expected[name], rest),
                                   rtol=0, atol=2e-5)
    assert np.abs(np.asarray(r["keys"]["A"]) - np.asarray(r["keys"]["A"])[:1]).max() > 1e-3  # it moves
    np.testing.assert_array_equal(r["rewritten"], r["keys"]["A"])
    assert r["rewrite_s"] < 2.0

    assert r["after_undo"] == r["before"]  # one Animate was one undo step
    assert r["before"]["A"]["keys"] == [] and not r["before"]["A"]["record"]

    from backend.solvers import solver_names

    assert r["offered"] == r["remembered"] == solver_names()
    code, message = r["refused"]
    assert code == "bad_input" and "no-such-solver" in message
    assert all(name in message for name in solver_names())
    assert r["after_refusal"] == r["before"]

    # glTF: a morph target per frame on 11, 13, ..., 41, positions as in Blender
    assert r["morphs"] == 16 and [round(x) for x in r["frame_range"]] == [11, 41]
    assert max(r["errors"].values()) < 1e-4, r["errors"]


@pytest.mark.blender
@pytest.mark.slow
@requires_bpy
def test_cancel_and_a_killed_backend_leave_the_scene_unchanged(blender_args):
    r = run_in_blender(MODULE, "scenario_cancel_kill_and_recover", **blender_args)
    c = r["cancelled"]
    assert c["result"] == ["CANCELLED"] and c["outcome"] == "cancelled" and c["state"]
    stage, step, total = c["progress"]
    assert stage == "sample" and step < total // 2, c  # stopped halfway, not at the end
    assert c["seconds"] < 30

    k = r["killed"]
    assert k["outcome"] == "backend_died" and k["state"]
    assert "stopped unexpectedly" in k["message"] and "restart" in k["message"]
    assert r["recovered"] == {"pid_changed": True, "frames": 16}

    for name in ("A", "B"):  # each object animated alone gives what the backend gives it alone
        alone = expected_frames(r["separately"]["sent"], blender_args["model_dir"], (name,))[name]
        np.testing.assert_allclose(r["separately"]["frames"][name], alone, rtol=0, atol=2e-5)

    assert r["abandoned"] == {"state": "cancelled", "busy": "", "unchanged": True,
                              "next": ["FINISHED"]}

    f = r["refusals"]
    assert "prompt is empty" in f["empty prompt"]
    assert "select one or more mesh objects" in f["no selection"]
    assert "does not exist" in f["not set up"] and "Backend Python" in f["not set up"]


@pytest.mark.blender
@pytest.mark.slow
@requires_bpy
def test_batch_collection_with_per_object_prompts_and_a_failing_item(blender_args):
    r = run_in_blender(MODULE, "scenario_batch", **blender_args)
    assert r["outcome"][0] == "items_failed" and "2 done, 1 failed" in r["outcome"][1]
    items = {i["object_name"]: i for i in r["saved"]["items"]}  # the persisted queue
    assert [i["object_name"] for i in r["saved"]["items"]] == ["Flag", "Bird", "Void"]
    assert items["Flag"]["prompt"] == "a flag flutters" and items["Bird"]["prompt"] == PROMPT
    assert items["Flag"]["status"] == items["Bird"]["status"] == "done"
    assert items["Flag"]["seed"] == SEED
    assert items["Void"]["status"] == "failed" and items["Void"]["error_code"] == "empty_mesh"
    assert "0 vertices" in items["Void"]["error"]
    assert r["animated"] == {"Flag": True, "Bird": True, "Void": False}
    assert r["frames"] == {"Flag": 16, "Bird": 16}
    assert r["resumed"] == [["Flag", "done"], ["Bird", "done"], ["Void", "failed"]]
    assert r["undone"] == {"Flag": False, "Bird": False, "Void": False}
    # the object's own prompt reached the backend (another prompt gives other frames here)
    own = expected_frames({"Flag": r["flag"]["sent"]}, blender_args["model_dir"], ("Flag",),
                          "a flag flutters")["Flag"]
    np.testing.assert_allclose(r["flag"]["frames"], own, rtol=0, atol=2e-5)
    other = expected_frames({"Flag": r["flag"]["sent"]}, blender_args["model_dir"], ("Flag",))["Flag"]
    assert np.abs(own - other).max() > 1e-4


@pytest.mark.blender
@requires_bpy
def test_panels_preferences_and_offline_refusals(blender_args):
    r = run_in_blender(MODULE, "scenario_ui_and_offline", **blender_args)
    drawn = {name for kind, name in r["log"] if kind in ("prop", "operator")}
    assert {"prompt", "model", "seed", "guidance", "steps", "num_traj", "frame_start", "mode",
            "device", "together", "batch_collection", "animateanymesh.animate", "chain", "repeat",
            "loop", "keep_shape", "mask_group", "mask_falloff", "variations", "animateanymesh.chain_add",
            "animateanymesh.chain_remove",
            "animateanymesh.new_seed", "animateanymesh.release_memory",
            "animateanymesh.remove_animation", "animateanymesh.animate_collection",
            "animateanymesh.export_animation", "python_mode", "python_path",
            "animateanymesh.setup_backend", "animateanymesh.download_official", "batch_runner",
            "ray_address", "ray_workers", "ray_cpus_per_worker"} <= drawn
    assert ["label", f"Using {sys.executable} (preferences)"] in r["log"]  # JSON: lists
    assert ["label", "Runs on the Ray cluster: head:6379 (Preferences)"] in r["log"]
    labels = [text for kind, text in r["log"] if kind == "label"]
    start = next(i for i, text in enumerate(labels) if text.startswith("The model never saw"))
    assert " ".join(labels[start:start + 3]).startswith("The model never saw the word 'xyzzy' in its training")
    assert r["seed_changed"]
    assert r["online"] is False  # the bpy wheel runs with online access off
    for name in ("setup_backend", "download_official"):
        assert "Online access is disabled" in r["refusals"][name]
        assert "Allow Online Access" in r["refusals"][name]
    assert r["unregistered"] and "/extensions/user_default/animateanymesh/" in r["addon_file"]


@pytest.mark.blender
@pytest.mark.slow
@requires_bpy
def test_set_up_backend_and_download_run_their_commands(blender_args, tmp_path):
    from tiny_wheel import NO_NETWORK

    r = run_in_blender(MODULE, "scenario_setup_and_download", work=str(tmp_path),
                       env={"HF_HUB_OFFLINE": "1", **NO_NETWORK}, **blender_args)
    assert r["state"] == "done" and r["env_state"] == "ready" and r["exists"] and r["under_user_dir"]
    assert r["log_has_check"]
    assert r["stopped"] == "cancelled" and r["incomplete_state"] == "incomplete"
    assert "Repair" in r["incomplete_refusal"]
    assert r["after_remove"] == "missing"
    assert r["steps"] == ["Creating the environment", "Installing packages", "Checking the backend",
                          "Marking the environment verified"]
    assert r["env_python"].endswith("backend-env/bin/python") or r["env_python"].endswith("python.exe")
    # Auto now finds the new environment (no checkout .venv beside this backend folder)
    assert r["found"] == [r["env_python"], "Set up backend"] and r["mode"] == "AUTO"
    assert "Download official weights failed" in r["download"]
    assert "error: could not download" in r["download"] and "download.log" in r["download"]
    argv = r["download_argv"]
    assert argv[1:4] == ["-m", "backend", "download-official"] and argv[4] == "--cache"
    assert argv[5].endswith("/extensions/.user/user_default/animateanymesh")  # the user folder

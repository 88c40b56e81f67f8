"""The work behind Animate and Animate collection, moved along by poll().

In the UI a modal operator calls poll() from a timer (Blender never waits); headless, a loop
calls it. Both go through the same code, which is why the tests, which have no event loop, test
what the panel runs.

Mesh data: the base mesh of each object, in its own vertex order (the reference shape key when
it has shape keys, otherwise the vertices), polygons as flat corner indices + corner counts
(quads and n-gons as they are; the backend triangulates and welds and answers in our order).

Selected objects are sent as one mesh in WORLD space by default and the result is split and
mapped back into each object's space:
* parts of one character (body, eyes, clothes) must move together, which only happens when the
  model sees them as one shape; this is also how the official code treats a multi-object file;
* the model knows which way is up (+Z, like Blender) and how big parts are relative to each
  other, which the objects' own spaces (rotated, scaled) would hide.
"One after the other" sends each object alone (still in world space), one job at a time.

A mask (a vertex group) travels as one weight per vertex in the same order as the vertices: the
group's weight inside it, 0 (pinned) outside. A loop is written closed (its first frame again at
the end, see writeback.closed_loop). Variations write each take on a copy (variations.py) and
leave the originals as they are.

Nothing is written to the scene before every job succeeded: a cancelled or failed Animate
leaves the scene as it was, and the write happens in the operator's last step, inside its undo
step.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import asdict, dataclass, replace

import bpy
import numpy as np

from . import blender_writeback as bw
from . import session, skinning, targets, variations
from . import writeback as wb
from .backend_client import BackendError
from .seam import ErrorCode, Polygons, SeamError, codes, limits, stages


class AnimateError(Exception):
    """A failure of an Animate, as a machine code and a sentence with the fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class AnimateOptions:
    prompt: str
    model: str = "default"          # "default", "official" or a model folder
    seed: int = 0
    guidance: float | None = None   # None: the model's default
    steps: int | None = None
    solver: str | None = None       # a name from the backend's Ready; None: the model's default
    quality: str | None = None      # a limits.QUALITY_PRESETS name; None: limits.DEFAULT_QUALITY
    num_traj: int | None = None     # None: picked from the vertex count
    frames: int | None = None       # the clip retimed to this many frames; None: the model's
    strength: float = 1.0           # a factor on the motion, 0-2
    chain: tuple = ()               # prompts that follow the prompt, one segment each
    repeat: int = 1                 # the prompt and its chain played this many times
    loop: str | None = None         # a limits.LOOP_METHODS name; None: no loop
    keep_shape: str | None = None   # a limits.KEEP_SHAPE_MODES name; None: the model's own
    mask_group: str = ""            # a vertex group: only it moves ("": the whole mesh)
    mask_falloff: float | None = None  # the mask's soft edge, a share of the mesh's size
    variations: int = 1             # takes side by side, each on a copy (variations.py)
    set_scene_range: bool = False   # after writing, the scene's frame range becomes the clip's
    device: str = "auto"
    frame_start: float = 1.0
    frame_step: float = 1.0
    mode: str = "SHAPE_KEYS"        # a write-back target's name (targets/)
    keep_rest: bool = True
    together: bool = True
    cache_dir: str = ""             # point caches; "" = the add-on's user folder
    bones: int = skinning.DEFAULT_BONES  # the armature target's deforming bones

    @property
    def then(self) -> list[str]:
        """The request's chained prompts: the prompt and its chain `repeat` times, minus the first."""
        return limits.chained(self.prompt, self.chain, self.repeat)

    def job_options(self) -> dict:
        return {"model": self.model, "seed": int(self.seed), "guidance": self.guidance,
                "steps": self.steps, "solver": self.solver or None, "num_traj": self.num_traj,
                # the default preset is not sent (as strength 1): the backend's default is it
                "quality": None if self.quality in (None, "", limits.DEFAULT_QUALITY) else self.quality,
                "frames": self.frames or None, "device": self.device,
                "strength": None if self.strength == 1.0 else float(self.strength),
                "then": self.then, "loop": self.loop or None,
                "keep_shape": self.keep_shape or None,
                "variations": int(self.variations) if self.variations != 1 else None,
                "mask_falloff": float(self.mask_falloff) if self.mask_group and self.mask_falloff
                else None}

    def write_settings(self) -> targets.WriteSettings:
        return targets.WriteSettings(float(self.frame_start), float(self.frame_step),
                                     anchor_rest=self.keep_rest, cache_dir=self.cache_dir,
                                     bones=int(self.bones))

    def check(self) -> None:
        try:
            limits.check_frames(self.frames or None)
            limits.check_quality(self.quality or None)
            limits.check_strength(float(self.strength))
        except SeamError as exc:
            raise AnimateError(exc.code, exc.message) from None
        if not self.prompt.strip():
            raise AnimateError(ErrorCode.NO_PROMPT, "the prompt is empty: type what the mesh should "
                               "do, e.g. \"a bird flaps its wings\".")
        try:
            limits.check_repeat(self.repeat)
            limits.check_then(self.then)
            limits.check_loop(self.loop or None)
            limits.check_keep_shape(self.keep_shape or None)
            limits.check_variations(self.variations)
            limits.check_mask_falloff(self.mask_falloff)
        except SeamError as exc:
            raise AnimateError(exc.code, exc.message) from None
        try:
            targets.get_target(self.mode).check_settings(self.write_settings())
        except wb.WritebackError as exc:
            raise AnimateError(ErrorCode.BAD_INPUT, str(exc)) from None


# ----------------------------------------------------------------------------- mesh data

@dataclass
class MeshPart:
    name: str
    count: int
    matrix: np.ndarray  # matrix_world when the request was made (4 x 4 float64)


@dataclass
class MeshRequest:
    """One backend job: one object, or several concatenated in world space."""

    parts: list[MeshPart]
    vertices: np.ndarray     # (N, 3) float32, world space
    polygons: Polygons
    mask: np.ndarray | None = None  # (N,) float32 weights, 0 pinned .. 1 moves; None: no mask


def object_mesh(obj) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rest (n, 3) float32 object space, corner indices, corners per polygon) of `obj`."""
    flat, sizes = bw.polygons(obj)
    return bw.rest_coordinates(obj), flat, sizes


def check_animatable(obj) -> None:
    """Refuse, before any job runs, what could not be written back afterwards."""
    if obj is None or obj.type != "MESH":
        raise AnimateError(ErrorCode.BAD_INPUT, f"'{getattr(obj, 'name', obj)}' is not a mesh object: only "
                           "meshes can be animated. Fix: select mesh objects.")
    try:
        bw.check_object(obj)  # linked data, edit mode
    except wb.WritebackError as exc:
        raise AnimateError(ErrorCode.BAD_INPUT, str(exc)) from None
    if len(obj.data.vertices) == 0:
        raise AnimateError(ErrorCode.EMPTY_MESH, f"mesh '{obj.name}' has 0 vertices: add geometry to it, or "
                           "leave it out of the selection.")
    m = np.array(obj.matrix_world, dtype=np.float64)
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise AnimateError(ErrorCode.BAD_INPUT, f"'{obj.name}' has a zero scale, so its animation could "
                           "not be mapped back onto it. Fix: give it a non-zero scale.")


def mask_weights(obj, group_name: str) -> np.ndarray:
    """(n,) float32: the weight of each vertex of `obj` in its vertex group `group_name`, 0 for
    the vertices outside it (an artist picks the group of the part that should move)."""
    group = obj.vertex_groups.get(group_name)
    if group is None:
        have = ", ".join(g.name for g in obj.vertex_groups) or "none"
        raise AnimateError(ErrorCode.BAD_MASK, f"'{obj.name}' has no vertex group '{group_name}' for "
                           f"the mask (its groups: {have}). Fix: pick one of its groups as Mask, "
                           "or clear Mask to move the whole mesh.")
    index = group.index
    weights = np.zeros(len(obj.data.vertices), dtype=np.float32)
    for vertex in obj.data.vertices:
        for element in vertex.groups:
            if element.group == index:
                weights[vertex.index] = element.weight
                break
    return np.clip(weights, 0.0, 1.0)


def build_requests(objects, together: bool, mask_group: str = "") -> list[MeshRequest]:
    objs, seen = [], set()
    for obj in objects:
        if obj is not None and obj.name in seen:
            continue
        check_animatable(obj)
        seen.add(obj.name)
        objs.append(obj)
    if not objs:
        raise AnimateError(ErrorCode.NO_OBJECTS, "nothing to animate: select one or more mesh objects.")
    masks = {o.name: mask_weights(o, mask_group) for o in objs} if mask_group else {}
    groups = [objs] if together else [[o] for o in objs]
    requests = []
    for group in groups:
        parts, verts, flats, sizes, offset = [], [], [], [], 0
        for obj in group:
            rest, flat, size = object_mesh(obj)
            matrix = np.array(obj.matrix_world, dtype=np.float64)
            verts.append(wb.to_world_space(rest, matrix))
            flats.append(flat + offset)
            sizes.append(size)
            parts.append(MeshPart(obj.name, len(rest), matrix))
            offset += len(rest)
        mask = np.concatenate([masks[o.name] for o in group]) if masks else None
        requests.append(MeshRequest(parts, np.concatenate(verts).astype(np.float32),
                                    Polygons(np.concatenate(flats), np.concatenate(sizes)), mask))
    return requests


def request_signature(requests: list[MeshRequest], options: AnimateOptions) -> str:
    """What decides the backend's answer: the same signature means the same frames (used to
    re-write a result on redo without asking the backend again)."""
    h = hashlib.sha1()
    inference = {k: v for k, v in asdict(options).items()
                 if k in ("prompt", "model", "seed", "guidance", "steps", "solver", "num_traj",
                          "frames", "strength", "device", "together", "loop", "variations")}
    inference["then"] = options.then
    sent = options.job_options()
    inference["mask_falloff"] = sent["mask_falloff"]
    inference["quality"] = sent["quality"]  # None and the default preset give the same frames
    inference["keep_shape"] = sent["keep_shape"]
    h.update(json.dumps(inference, sort_keys=True).encode())
    for request in requests:
        for part in request.parts:
            h.update(part.name.encode() + b"\0")
        h.update(request.vertices.tobytes())
        h.update(np.ascontiguousarray(request.polygons.flat, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(request.polygons.sizes, dtype=np.int64).tobytes())
        if request.mask is not None:
            h.update(b"mask\0" + np.ascontiguousarray(request.mask, dtype=np.float32).tobytes())
    return h.hexdigest()


def split_result(request: MeshRequest, frames: np.ndarray) -> dict[str, np.ndarray]:
    """World-space frames of a request -> {object name: frames in the object's own space}."""
    pieces = wb.split_frames(frames, [p.count for p in request.parts])
    return {part.name: wb.to_object_space(piece, part.matrix)
            for part, piece in zip(request.parts, pieces)}


# ----------------------------------------------------------------------------- write-back

def clip_range(info) -> tuple[int, int]:
    """The scene frames a written clip plays on: a loop's one period (its closing frame is where
    the timeline wraps back), otherwise every frame; a fractional end still shows its last frame."""
    if info.period:
        return wb.loop_scene_range(info.frame_start, info.frame_end)
    return math.floor(info.frame_start), math.ceil(info.frame_end)


def frame_scene_range(scene, infos) -> None:
    """The scene's frame range (and preview range, when one is on) becomes the span of the clips
    just written: a loop's range is exactly its period, so playback wraps without a seam."""
    if not infos:
        return
    start = min(clip_range(i)[0] for i in infos)
    end = max(clip_range(i)[1] for i in infos)
    if start > scene.frame_end:  # Blender keeps start <= end at every assignment
        scene.frame_end, scene.frame_start = end, start
    else:
        scene.frame_start, scene.frame_end = start, end
    if scene.use_preview_range:
        scene.frame_preview_start, scene.frame_preview_end = start, end


def clip_for_writing(frames, options: AnimateOptions) -> np.ndarray:
    """The frames as written: a loop closed by its first frame again (writeback.closed_loop)."""
    return wb.closed_loop(frames) if options.loop else frames


def after_write(obj, info, options: AnimateOptions, seed: int | None = None) -> None:
    """What the record keeps beyond the target's own: a loop's method and period, the seed."""
    if options.loop:
        info.period = info.num_frames - 1
    bw.note_record(obj, loop=options.loop or None, period=info.period or None, seed=seed)


def write_results(frames_by_name: dict, options: AnimateOptions, seed: int | None = None,
                  prepared: dict | None = None) -> list:
    """Write every object's frames, or nothing: all checks run before the first write.
    `prepared` holds what a target's solve_job made for an object (by name), if anything."""
    settings = options.write_settings()
    try:
        target = targets.get_target(options.mode)
        target.check_settings(settings)
    except wb.WritebackError as exc:
        raise AnimateError(ErrorCode.WRITEBACK, str(exc)) from None
    checked = []
    for name, frames in frames_by_name.items():
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise AnimateError(ErrorCode.OBJECT_GONE, f"'{name}' was deleted or renamed while it "
                               "was being animated: animate it again.")
        try:
            target.check(obj, settings)
            checked.append((obj, clip_for_writing(wb.as_frames(frames, len(obj.data.vertices)),
                                                  options)))
        except wb.WritebackError as exc:
            raise AnimateError(ErrorCode.WRITEBACK, str(exc)) from None
    infos = []
    for obj, f in checked:
        try:
            infos.append(targets.write_prepared(target, obj, f, settings,
                                                (prepared or {}).get(obj.name)))
        except wb.WritebackError as exc:  # checked above; a disk error for a file remains
            raise AnimateError(ErrorCode.WRITEBACK, str(exc)) from None
        after_write(obj, infos[-1], options, seed)
    return infos


def write_variations(requests: list[MeshRequest], takes: list[dict], seeds: list[int],
                     options: AnimateOptions) -> list:
    """Every take on copies of the objects (variations.py), the originals left as they are."""
    groups = [[(p.name, p.matrix) for p in r.parts] for r in requests]
    widths = [float(np.ptp(r.vertices[:, 0])) if len(r.vertices) else 0.0 for r in requests]
    diagonals = [float(np.linalg.norm(np.ptp(r.vertices, axis=0))) if len(r.vertices) else 0.0
                 for r in requests]
    prepared = [{name: clip_for_writing(frames, options) for name, frames in take.items()}
                for take in takes]
    try:
        written = variations.write_takes(groups, widths, diagonals, prepared, seeds, options.mode,
                                         options.write_settings())
    except wb.WritebackError as exc:
        raise AnimateError(ErrorCode.WRITEBACK, str(exc)) from None
    infos = []
    for obj, info, seed in written:
        after_write(obj, info, options, seed)
        infos.append(info)
    return infos


# ----------------------------------------------------------------------------- one Animate

class AnimateRun:
    """The jobs of one Animate: one request after the other, then everything is written at once."""

    kind = "animate"

    def __init__(self, objects, options: AnimateOptions, client_factory=None):
        options.check()
        self.options = options
        self.requests = build_requests(objects, options.together, options.mask_group)
        self.signature = request_signature(self.requests, options)
        self.names = [p.name for r in self.requests for p in r.parts]
        self.state = "pending"
        self.error: tuple[str, str] | None = None
        self.takes: list[dict[str, np.ndarray]] = []   # take k: {object name: frames}
        self.seeds: list[int] = []
        self.warnings: list[str] = []
        self.seed: int | None = None
        self.index = 0
        self.job = None
        self._client_factory = client_factory or session.client
        self._cancel = threading.Event()
        self._cancel_sent = False
        self.solves: list = []          # (object name, a target's solve job), after the backend
        self.prepared: dict = {}        # object name: what its solve made

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def frames(self) -> dict[str, np.ndarray]:
        """{object name: frames} of the first take."""
        return self.takes[0] if self.takes else {}

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        if self.state == "solving":   # the backend's share is done; the solves share the rest
            done = sum(job.fraction for _, job in self.solves) / len(self.solves)
            return 0.9 + 0.1 * done
        current = stages.progress_fraction(*self.job.progress) if self.job is not None else 0.0
        return 0.9 * (self.index + current) / len(self.requests) if self._solves_after() \
            else (self.index + current) / len(self.requests)

    def _solves_after(self) -> bool:
        return self.options.variations == 1 and targets.get_target(self.options.mode).solves

    @property
    def text(self) -> str:
        if self.state == "running" and self.job is not None:
            where = f" ({self.index + 1}/{len(self.requests)})" if len(self.requests) > 1 else ""
            return f"Animating{where}: {stages.progress_text(*self.job.progress)}"
        if self.state == "solving":
            current = next((job for _, job in self.solves if not job.finished), self.solves[-1][1])
            return current.text
        if self.state == "error":
            return f"Failed: {self.error[1]}"
        return self.state.capitalize()

    @property
    def stage(self) -> str:
        return self.job.progress[0] if self.job is not None else ""

    def start(self) -> "AnimateRun":
        self.state = "running"
        self._submit()
        return self

    def request_cancel(self) -> None:
        """Thread-safe: the next poll() sends the cancel (Esc, the Cancel button, Ctrl-C)."""
        self._cancel.set()

    def poll(self) -> bool:
        """Move the run along without blocking; True once it has finished."""
        if self.finished:
            return True
        if self.state == "solving":
            return self._poll_solves()
        job = self.job
        if self._cancel.is_set() and not self._cancel_sent:
            self._cancel_sent = True
            job.cancel()
        job.poll()
        if job.state == "running":
            return False
        if job.state == "done":
            takes = job.result_takes()
            if not self.takes:
                self.takes = [{} for _ in range(len(takes))]
            for store, take in zip(self.takes, takes):
                store.update(split_result(self.requests[self.index], take))
            self.warnings += [w for w in job.warnings if w not in self.warnings]
            self.seed, self.seeds = job.seed, list(job.seeds)
            self.index += 1
            if self.index == len(self.requests):
                self._start_solves()
            elif self._cancel.is_set():
                self.state = "cancelled"
            else:
                self._submit()
        elif job.state == "error":
            self._fail(*job.error)
        else:
            self.state = "cancelled"
        return self.finished

    def run_blocking(self, on_progress=None, interval: float = 0.05) -> str:
        """Poll until finished (headless, scripts). Ctrl-C cancels the job and still waits for
        the backend to confirm, so no job is left running."""
        import time

        while not self.poll():
            if on_progress is not None:
                on_progress(self)
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                self.request_cancel()
        return self.state

    # ------------------------------------------------------------ a target's solve (armature)

    def _start_solves(self) -> None:
        """After the backend: the target's heavy work for each object, one after the other (a
        skinning solve in its own process), before anything is written."""
        target = targets.get_target(self.options.mode)
        self.solves = []
        if self.options.variations == 1:
            for name, frames in self.frames.items():
                obj = bpy.data.objects.get(name)
                if obj is None:
                    continue   # apply() reports it
                try:
                    job = target.solve_job(obj, clip_for_writing(frames, self.options),
                                           self.options.write_settings())
                except wb.WritebackError as exc:
                    self._fail(ErrorCode.WRITEBACK, str(exc))
                    return
                if job is not None:
                    self.solves.append((name, job))
        if not self.solves:
            self.state = "done"
            return
        self.state = "solving"
        self.solves[0][1].start()

    def _poll_solves(self) -> bool:
        current = next((job for _, job in self.solves if not job.finished), None)
        if current is not None and self._cancel.is_set():
            current.cancel()
            self.state = "cancelled"
            return True
        if current is not None and not current.poll():
            return False
        for _, job in self.solves:
            if job.state == "error":
                self._fail(ErrorCode.WRITEBACK, job.error)
                return True
        pending = [job for _, job in self.solves if job.state == "pending"]
        if pending:
            pending[0].start()
            return False
        self.prepared = {name: job.result for name, job in self.solves}
        self.state = "done"
        return True

    def abandon(self) -> None:
        """Stop now, without waiting for the backend's answer (the file is being closed, or
        Blender ended the modal operator): the job is told to cancel, nothing is written."""
        for _, job in self.solves:
            job.cancel()
        self._cancel.set()
        if self.job is not None and not self.job.finished:
            self.job.cancel()
        if not self.finished:
            self.state = "cancelled"

    def apply(self) -> list:
        """Write the result (the operator's final step). Raises AnimateError."""
        if self.state != "done":
            raise AnimateError(ErrorCode.NO_RESULT, f"nothing to write: the run is {self.state}.")
        if self.options.variations > 1:
            return write_variations(self.requests, self.takes, self.seeds, self.options)
        return write_results(self.frames, self.options, self.seed, self.prepared)

    def _submit(self) -> None:
        request = self.requests[self.index]
        try:
            client = self._client_factory()
            self.job = client.submit(request.vertices, request.polygons, self.options.prompt,
                                     mask=request.mask, **self.options.job_options())
        except BackendError as exc:
            self._fail(exc.code, exc.message)

    def _fail(self, code: str, message: str) -> None:
        self.state = "error"
        self.error = (code, message)


# ----------------------------------------------------------------------------- batch

class BatchRun:
    """Runs a BatchQueue: one object per job, one job at a time, each result written as soon as
    it arrives (a long batch keeps what it finished), the queue saved after every change."""

    kind = "batch"

    def __init__(self, queue, options: AnimateOptions, save=None, client_factory=None):
        self.queue = queue
        self.options = options          # everything but the prompt, which each item carries
        self.state = "pending"
        self.error: tuple[str, str] | None = None
        self.written = 0
        self.infos: list = []           # what every written item made (for the scene range)
        self.warnings: list[str] = []
        self.item = None
        self.job = None
        self._request = None
        self._item_options = None
        self._save = save or (lambda: None)
        self._client_factory = client_factory or session.client
        self._cancel = threading.Event()
        self._cancel_sent = False
        self.solve = None               # the item's target solve (armature), after its job

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def fraction(self) -> float:
        total = len(self.queue.items) or 1
        counts = self.queue.counts()
        settled = counts["done"] + counts["failed"] + counts["cancelled"]
        current = stages.progress_fraction(*self.job.progress) if self.job is not None else 0.0
        if self.solve is not None:
            current = 0.9 + 0.1 * self.solve.fraction
        return min((settled + current) / total, 1.0)

    @property
    def text(self) -> str:
        if self.state == "running" and self.item is not None and self.job is not None:
            counts = self.queue.counts()
            position = counts["done"] + counts["failed"] + counts["cancelled"] + 1
            doing = self.solve.text if self.solve is not None else \
                stages.progress_text(*self.job.progress)
            return f"Batch {position}/{len(self.queue.items)} '{self.item.object_name}': {doing}"
        if self.state == "error":
            return f"Batch stopped: {self.error[1]}"
        return f"Batch {self.state}"

    @property
    def stage(self) -> str:
        return self.job.progress[0] if self.job is not None else ""

    def start(self) -> "BatchRun":
        self.state = "running"
        self.queue.interrupted()
        self._save()
        return self

    def request_cancel(self) -> None:
        self._cancel.set()

    def poll(self) -> bool:
        if self.finished:
            return True
        if self._cancel.is_set() and not self._cancel_sent:
            self._cancel_sent = True
            self.queue.cancel_all()
            self._save()
            if self.job is not None:
                self.job.cancel()
            if self.solve is not None:
                self.solve.cancel()
        if self.job is not None:
            self.job.poll()
            if self.job.state == "running":
                return False
            if self.solve is None and self.job.state == "done" and self._start_solve():
                return False
            if self.solve is not None and not self.solve.poll():
                return False
            self._settle()
            if self.finished:
                return True
        if self._cancel.is_set():
            self.state = "cancelled"
            return True
        item = self.queue.next_queued()
        if item is None:
            self.state = "done"
            return True
        self._begin(item)
        return self.finished

    run_blocking = AnimateRun.run_blocking

    def abandon(self) -> None:
        """Stop now: the job is told to cancel, its object goes back to the queue (Resume runs
        it later), the queue is saved."""
        self._cancel.set()
        if self.job is not None and not self.job.finished:
            self.job.cancel()
        if self.solve is not None:
            self.solve.cancel()
        self.job = self.solve = None
        self.queue.interrupted()
        self._save()
        if not self.finished:
            self.state = "cancelled"

    def _begin(self, item) -> None:
        self.queue.start(item)
        self.item = item
        obj = bpy.data.objects.get(item.object_name)
        try:
            if obj is None:
                raise AnimateError(ErrorCode.OBJECT_GONE, f"object '{item.object_name}' no longer exists.")
            options = self._item_options = item_options(self.options, item)
            options.check()
            (self._request,) = build_requests([obj], together=True, mask_group=options.mask_group)
            client = self._client_factory()
            self.job = client.submit(self._request.vertices, self._request.polygons, item.prompt,
                                     mask=self._request.mask, **options.job_options())
        except AnimateError as exc:
            self._item_failed(exc.code, exc.message)
        except BackendError as exc:
            self._item_failed(exc.code, exc.message)
        self._save()

    def _start_solve(self) -> bool:
        """The item's target solve (a skinning in its own process), started; False if none."""
        options = self._item_options
        if options.variations > 1:
            return False
        name = self._request.parts[0].name
        obj = bpy.data.objects.get(name)
        frames = split_result(self._request, self.job.result_takes()[0]).get(name)
        if obj is None or frames is None:
            return False          # _settle reports it
        try:
            self.solve = targets.get_target(options.mode).solve_job(
                obj, clip_for_writing(frames, options), options.write_settings())
        except wb.WritebackError:
            return False          # the write's own checks report it
        if self.solve is None:
            return False
        self.solve.start()
        return True

    def _settle(self) -> None:
        job, item, solve = self.job, self.item, self.solve
        self.job = self.solve = None
        if job.state == "done" and solve is not None and solve.state != "done":
            if solve.state == "error":
                self._item_failed(ErrorCode.WRITEBACK, solve.error)
            else:
                self.queue.cancel(item, "cancelled while it ran")
                self.item = None
            self._save()
            return
        if job.state == "done":
            try:
                options = self._item_options
                takes = [split_result(self._request, take) for take in job.result_takes()]
                prepared = {self._request.parts[0].name: solve.result} if solve is not None else None
                if options.variations > 1:
                    infos = write_variations([self._request], takes, job.seeds, options)
                else:
                    infos = write_results(takes[0], options, job.seed, prepared)
                self.warnings += [f"{item.object_name}: {w}"
                                  for w in job.warnings + [w for i in infos for w in i.warnings]]
                for info in infos:
                    bw.note_warnings(bpy.data.objects.get(info.object_name), job.warnings + info.warnings)
                self.queue.done(item, job.seed, job.seconds)
                self.written += 1
                self.infos += infos
            except AnimateError as exc:
                self._item_failed(exc.code, exc.message)
        elif job.state == "error":
            self._item_failed(*job.error)
        else:
            self.queue.cancel(item, "cancelled while it ran")
        self.item = None
        self._save()

    def _item_failed(self, code: str, message: str) -> None:
        item = self.item
        self.job = None
        if code in codes.FATAL:
            # The same failure would hit every item: keep them all queued for Resume and stop.
            self.queue.requeue(item, code, message)
            self.item = None
            self.state = "error"
            self.error = (code, message)
            return
        self.queue.fail(item, code, message)
        self.item = None


def item_options(options: AnimateOptions, item) -> AnimateOptions:
    """The options of one batch item: the batch's, with the item's prompt and its own settings
    (resolved from the panel and the object's custom properties when the queue was built)."""
    return replace(options, prompt=item.prompt, chain=tuple(item.chain), repeat=int(item.repeat),
                   loop=item.loop or None, mask_group=item.mask or "", keep_shape=item.keep_shape,
                   mask_falloff=item.mask_falloff, variations=int(item.variations or 1),
                   bones=int(item.bones or options.bones))

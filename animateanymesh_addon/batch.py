"""The batch queue behind "Animate collection": items, statuses, retries, and its JSON file.

No bpy here: the queue is plain data the batch runner (controller.BatchRun) moves along and the
panel draws. It is saved after every change (written to a temporary file and renamed), one file
per .blend under the add-on's user folder, so a crash or a restart of Blender shows what was
done, what failed and why, and Resume carries on with the rest.

Statuses: queued -> running -> done | failed | cancelled. A failure the backend may not repeat
(it died, an internal error) goes back to queued until the item has used `max_attempts`; a
failure of the input (empty mesh, bad prompt, missing model) fails at once: retrying cannot help.

Each item carries its own settings, resolved when the queue is built: the panel's chain, repeat,
loop, mask, falloff and variations, with the object's custom properties (`aam_then`, ...) over
them, so Resume runs what was asked even after the panel changed. The sampling settings (seed,
quality, steps, solver, guidance, tokens) have no per-object override: they are the panel's when
the batch runs, for every object alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .seam import ErrorCode, atomic, codes, limits
from .skinning import MAX_BONES

STATUSES = ("queued", "running", "done", "failed", "cancelled")
QUEUE_FORMAT = "animateanymesh-queue"
QUEUE_VERSION = 1
DEFAULT_PROMPT_PROPERTY = "aam_prompt"
# Per-object overrides of the panel's settings, as custom properties (beside the prompt's own):
THEN_PROPERTY = "aam_then"                  # the prompts that follow, one per line
REPEAT_PROPERTY = "aam_repeat"              # the prompt and its chain played this many times
LOOP_PROPERTY = "aam_loop"                  # a loop method's name, or off
MASK_PROPERTY = "aam_mask"                  # a vertex group: only it moves ("": the whole mesh)
MASK_FALLOFF_PROPERTY = "aam_mask_falloff"  # 0..1 of the mesh's size
VARIATIONS_PROPERTY = "aam_variations"      # takes side by side, each on a copy
BONES_PROPERTY = "aam_bones"                # Write: Armature, its deforming bones
KEEP_SHAPE_PROPERTY = "aam_keep_shape"      # off, auto, on, or model (the model's own)
OVERRIDE_PROPERTIES = (THEN_PROPERTY, REPEAT_PROPERTY, LOOP_PROPERTY, MASK_PROPERTY,
                       MASK_FALLOFF_PROPERTY, VARIATIONS_PROPERTY, BONES_PROPERTY, KEEP_SHAPE_PROPERTY)
OVERRIDES_HELP = (f"Other custom properties override the panel per object: {THEN_PROPERTY} (the "
                  f"prompts that follow, one per line; empty: none), {REPEAT_PROPERTY}, "
                  f"{LOOP_PROPERTY} ({', '.join(limits.LOOP_METHODS)} or off), {MASK_PROPERTY} (a "
                  f"vertex group; empty: no mask), {MASK_FALLOFF_PROPERTY}, {VARIATIONS_PROPERTY}, "
                  f"{BONES_PROPERTY} (Write: Armature), {KEEP_SHAPE_PROPERTY} "
                  f"({', '.join(limits.KEEP_SHAPE_MODES)} or model)")
_NO_LOOP = ("", "off", "none", "no", "false")


class QueueError(ValueError):
    """A queue file that cannot be used; the message says what to do."""


@dataclass
class QueueItem:
    object_name: str
    prompt: str
    status: str = "queued"
    attempts: int = 0
    error: str = ""
    error_code: str = ""
    seed: int | None = None
    seconds: float | None = None
    updated: float = 0.0
    # the request's settings for this object (the panel's, or its own custom properties)
    chain: list[str] = field(default_factory=list)
    repeat: int = 1
    loop: str | None = None
    mask: str = ""
    mask_falloff: float | None = None
    variations: int = 1
    bones: int | None = None        # None: the panel's
    keep_shape: str | None = None   # None: the model's own

    def settings(self) -> dict:
        return {"chain": list(self.chain), "repeat": self.repeat, "loop": self.loop,
                "mask": self.mask, "mask_falloff": self.mask_falloff, "variations": self.variations,
                "bones": self.bones, "keep_shape": self.keep_shape}

    @classmethod
    def from_dict(cls, data: dict) -> "QueueItem":
        known = {f.name for f in fields(cls)}
        item = cls(**{k: v for k, v in data.items() if k in known})
        if item.status not in STATUSES:
            raise QueueError(f"queue item '{item.object_name}' has unknown status {item.status!r}.")
        return item


@dataclass
class BatchQueue:
    items: list[QueueItem] = field(default_factory=list)
    max_attempts: int = 2
    collection: str = ""

    # ---- building

    @classmethod
    def for_objects(cls, entries, default_prompt: str, *, max_attempts: int = 2,
                    collection: str = "") -> "BatchQueue":
        """entries: (object name, own prompt or "") or (name, own prompt, settings) in order, the
        settings as `object_settings` returns them. An object without a prompt of its own takes
        `default_prompt`; with neither it fails at once, saying how to give one."""
        queue = cls(max_attempts=max(1, int(max_attempts)), collection=collection)
        for name, own, *rest in entries:
            prompt = (own or "").strip() or (default_prompt or "").strip()
            item = QueueItem(object_name=name, prompt=prompt, updated=time.time(),
                             **(rest[0] if rest else {}))
            if not prompt:
                item.status, item.error_code = "failed", ErrorCode.NO_PROMPT.value
                item.error = (f"no prompt for '{name}': type one in the panel, or give the object a "
                              f"custom property '{DEFAULT_PROMPT_PROPERTY}' with its own.")
            queue.items.append(item)
        return queue

    # ---- reading

    def counts(self) -> dict[str, int]:
        out = {status: 0 for status in STATUSES}
        for item in self.items:
            out[item.status] += 1
        return out

    def next_queued(self) -> QueueItem | None:
        return next((item for item in self.items if item.status == "queued"), None)

    def running(self) -> QueueItem | None:
        return next((item for item in self.items if item.status == "running"), None)

    @property
    def finished(self) -> bool:
        return all(item.status in ("done", "failed", "cancelled") for item in self.items)

    def find(self, object_name: str) -> QueueItem | None:
        return next((item for item in self.items if item.object_name == object_name), None)

    # ---- changes

    def _set(self, item: QueueItem, status: str, code: str = "", error: str = "") -> None:
        item.status, item.error_code, item.error = status, code, error
        item.updated = time.time()

    def start(self, item: QueueItem) -> None:
        if item.status != "queued":
            raise QueueError(f"'{item.object_name}' is {item.status}, not queued.")
        item.attempts += 1
        self._set(item, "running")

    def done(self, item: QueueItem, seed: int | None = None, seconds: float | None = None) -> None:
        item.seed, item.seconds = seed, seconds
        self._set(item, "done")

    def fail(self, item: QueueItem, code: str, message: str, retry: bool = True) -> bool:
        """Record a failure. Returns True when the item went back to the queue for another try
        (`retry` False: the runner already spent the attempts, as a Ray batch does)."""
        if retry and code in codes.RETRYABLE and item.attempts < self.max_attempts:
            self._set(item, "queued", code, f"attempt {item.attempts} failed ({message}); retrying")
            return True
        self._set(item, "failed", code, message)
        return False

    def requeue(self, item: QueueItem, code: str, message: str) -> None:
        """Back to the queue without using up an attempt: the failure was not the item's (the
        backend could not start at all), so Resume runs it once that is fixed."""
        item.attempts = max(item.attempts - 1, 0)
        self._set(item, "queued", code, message)

    def cancel(self, item: QueueItem, reason: str = "cancelled") -> None:
        self._set(item, "cancelled", "cancelled", reason)

    def cancel_all(self) -> int:
        """Cancel every queued item (the running one is cancelled by whoever runs it)."""
        count = 0
        for item in self.items:
            if item.status == "queued":
                self.cancel(item, "cancelled before it ran")
                count += 1
        return count

    def retry_failed(self) -> int:
        """Put failed and cancelled items back in the queue with a fresh attempt budget."""
        count = 0
        for item in self.items:
            if item.status in ("failed", "cancelled"):
                item.attempts = 0
                self._set(item, "queued")
                count += 1
        return count

    def interrupted(self) -> int:
        """Items left "running" by a Blender that closed or crashed mid-job go back to queued."""
        count = 0
        for item in self.items:
            if item.status == "running":
                self._set(item, "queued", "interrupted", "interrupted: Blender stopped while it ran")
                count += 1
        return count

    # ---- file

    def to_dict(self) -> dict:
        return {"format": QUEUE_FORMAT, "version": QUEUE_VERSION, "collection": self.collection,
                "max_attempts": self.max_attempts, "items": [asdict(i) for i in self.items]}

    @classmethod
    def from_dict(cls, data: dict) -> "BatchQueue":
        if not isinstance(data, dict) or data.get("format") != QUEUE_FORMAT:
            raise QueueError("not an AnimateAnyMesh queue file.")
        if data.get("version") != QUEUE_VERSION:
            raise QueueError(f"queue file version {data.get('version')} is not {QUEUE_VERSION}; "
                             "clear the queue and start the batch again.")
        items = [QueueItem.from_dict(d) for d in data.get("items", [])]
        return cls(items=items, max_attempts=int(data.get("max_attempts", 2)),
                   collection=str(data.get("collection", "")))

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic.write_text_atomically(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "BatchQueue":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise QueueError(f"cannot read the queue file {path}: {exc}; clear the queue.") from None
        return cls.from_dict(data)


# ----------------------------------------------------------------------------- overrides

def _override_error(name: str, prop: str, value, fix: str) -> QueueError:
    return QueueError(f"'{name}' has custom property {prop} = {value!r}: {fix}")


def _whole(name: str, prop: str, value, low: int, high: int) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        number = int(float(value))
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise _override_error(name, prop, value, f"use a whole number from {low} to {high}, or "
                              "remove the property to use the panel's.")
    return number


def object_settings(name: str, props, defaults: dict) -> dict:
    """The settings of one object of a batch: `defaults` (the panel's chain, repeat, loop, mask,
    mask_falloff, variations, bones, keep_shape) with the object's own custom properties `props`
    (a mapping) over them. Raises QueueError naming the object, the property and the fix."""
    out = dict(defaults)
    if THEN_PROPERTY in props:
        value = props[THEN_PROPERTY]
        if not isinstance(value, str):
            raise _override_error(name, THEN_PROPERTY, value, "make it text: the prompts that "
                                  "follow the object's prompt, one per line.")
        out["chain"] = [line.strip() for line in value.splitlines() if line.strip()]
    if REPEAT_PROPERTY in props:
        out["repeat"] = _whole(name, REPEAT_PROPERTY, props[REPEAT_PROPERTY], 1, limits.MAX_SEGMENTS)
    if LOOP_PROPERTY in props:
        value = props[LOOP_PROPERTY]
        method = str(value).strip().lower() if isinstance(value, str) else None
        if method is None or (method not in _NO_LOOP and method not in limits.LOOP_METHODS):
            raise _override_error(name, LOOP_PROPERTY, value, f"use {', '.join(limits.LOOP_METHODS)} "
                                  "or off, or remove the property to use the panel's Loop.")
        out["loop"] = None if method in _NO_LOOP else method
    if MASK_PROPERTY in props:
        value = props[MASK_PROPERTY]
        if not isinstance(value, str):
            raise _override_error(name, MASK_PROPERTY, value, "make it the name of one of the "
                                  "object's vertex groups (empty: no mask).")
        out["mask"] = value.strip()
    if MASK_FALLOFF_PROPERTY in props:
        value = props[MASK_FALLOFF_PROPERTY]
        try:
            falloff = None if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            falloff = None
        if falloff is None or not math.isfinite(falloff) or not 0 <= falloff <= limits.MAX_FALLOFF:
            raise _override_error(name, MASK_FALLOFF_PROPERTY, value, f"use a number from 0 to "
                                  f"{limits.MAX_FALLOFF:g} (a share of the mesh's size; 0: a hard "
                                  "edge).")
        out["mask_falloff"] = falloff or None
    if VARIATIONS_PROPERTY in props:
        out["variations"] = _whole(name, VARIATIONS_PROPERTY, props[VARIATIONS_PROPERTY], 1,
                                   limits.MAX_VARIATIONS)
    if BONES_PROPERTY in props:
        out["bones"] = _whole(name, BONES_PROPERTY, props[BONES_PROPERTY], 1, MAX_BONES)
    if KEEP_SHAPE_PROPERTY in props:
        value = props[KEEP_SHAPE_PROPERTY]
        mode = value.strip().lower() if isinstance(value, str) else None
        if mode not in (*limits.KEEP_SHAPE_MODES, "model"):
            raise _override_error(name, KEEP_SHAPE_PROPERTY, value, f"use {', '.join(limits.KEEP_SHAPE_MODES)} "
                                  "or model, or remove the property to use the panel's Keep Shape.")
        out["keep_shape"] = None if mode == "model" else mode
    return out


def queue_file(folder, blend_path: str) -> Path:
    """One queue per .blend file (by its path); unsaved files share "unsaved.json"."""
    folder = Path(folder)
    if not blend_path:
        return folder / "unsaved.json"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(blend_path).stem)[:40]
    digest = hashlib.sha1(str(Path(blend_path).resolve()).encode("utf-8")).hexdigest()[:10]
    return folder / f"{stem}-{digest}.json"

"""A contact sheet of an animation: every model frame rendered with Workbench, tiled into one PNG.

The render happens in the open scene with its settings swapped for the preview's (engine,
size, camera, colour management, other objects hidden) and put back afterwards, so parented
objects keep their transforms. One orthographic camera, framed on the animation's extent over
all frames, looks from the front-left and a little above (Blender's front is -Y, up is +Z), so
the motion between tiles is motion on the sheet. Tiles are composed with numpy and written
through a Blender image, so no imaging library is needed inside Blender.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import bpy
import numpy as np

from . import blender_writeback as bw
from . import targets
from . import writeback as wb

BACKGROUND = (0.16, 0.16, 0.18)
LABEL_COLOR = (0.92, 0.92, 0.92)
AZIMUTH_DEG, ELEVATION_DEG = 35.0, 20.0
# 3 x 5 bitmaps of the digits, one string per row, for the frame numbers on the tiles
_DIGITS = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
    ".": ("000", "000", "000", "000", "010"), "-": ("000", "000", "111", "000", "000"),
}


class PreviewError(Exception):
    pass


# ----------------------------------------------------------------------------- pure parts

def sheet_shape(num_tiles: int, columns: int, size: int) -> tuple[int, int]:
    """(width, height) in pixels of a sheet of `num_tiles` square tiles."""
    columns = max(1, min(int(columns), int(num_tiles)))
    rows = math.ceil(num_tiles / columns)
    return columns * size, rows * size


def pick_times(times, max_tiles: int | None) -> list[float]:
    """At most `max_tiles` of `times`, evenly spread, first and last kept."""
    times = list(times)
    if not max_tiles or len(times) <= max_tiles:
        return times
    index = np.unique(np.round(np.linspace(0, len(times) - 1, int(max_tiles))).astype(int))
    return [times[i] for i in index]


def camera_frame(points: np.ndarray, azimuth_deg: float = AZIMUTH_DEG,
                 elevation_deg: float = ELEVATION_DEG, margin: float = 1.15):
    """(location, forward, ortho_scale, clip_end) of an orthographic camera seeing all points."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    forward = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), -math.sin(el)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    lo, hi = points.min(0), points.max(0)
    center = (lo + hi) / 2
    rel = points - center
    half = max(float(np.abs(rel @ right).max()), float(np.abs(rel @ up).max()), 1e-6)
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
    location = center - forward * (radius * 3.0 + 1.0)
    return location, forward, 2 * half * margin, radius * 8.0 + 2.0


def draw_label(tile: np.ndarray, text: str, scale: int = 2, pad: int = 4) -> None:
    """Write `text` (digits) into the top-left corner of an (H, W, 4) bottom-up tile."""
    h = tile.shape[0]
    x = pad
    for ch in text:
        glyph = _DIGITS.get(ch)
        if glyph is None:
            x += 4 * scale
            continue
        for row, bits in enumerate(glyph):
            for col, bit in enumerate(bits):
                if bit == "1":
                    y_top = h - pad - row * scale  # rows count down from the top edge
                    tile[y_top - scale:y_top, x + col * scale:x + (col + 1) * scale, :3] = LABEL_COLOR
        x += 4 * scale


def compose(tiles: list[np.ndarray], columns: int, labels: list[str] | None = None) -> np.ndarray:
    """Tiles (size, size, 4) RGBA, bottom-up rows as Blender stores images -> one opaque sheet,
    tile 0 at the top left, row by row."""
    size = tiles[0].shape[0]
    width, height = sheet_shape(len(tiles), columns, size)
    columns = width // size
    rows = height // size
    sheet = np.empty((height, width, 4), dtype=np.float32)
    sheet[..., :3] = BACKGROUND
    sheet[..., 3] = 1.0
    for i, tile in enumerate(tiles):
        alpha = tile[..., 3:4]
        rgb = tile[..., :3] * alpha + np.array(BACKGROUND, dtype=np.float32) * (1 - alpha)
        out = np.concatenate([rgb, np.ones_like(alpha)], axis=-1)
        if labels:
            draw_label(out, labels[i])
        r, c = divmod(i, columns)
        y0 = (rows - 1 - r) * size
        sheet[y0:y0 + size, c * size:(c + 1) * size] = out
    return sheet


# ----------------------------------------------------------------------------- Blender parts

def animation_times(objects) -> list[float]:
    """Timeline times of every model frame of the objects' AnimateAnyMesh animations."""
    times = set()
    for obj in objects:
        timeline = bw.animation_timeline(obj)
        if timeline is not None:
            times.update(float(t) for t in timeline.times(int(bw.animation_info(obj)["num_frames"])))
    if not times:
        raise PreviewError("none of the objects carries an AnimateAnyMesh animation: animate them "
                           "before asking for a preview.")
    return sorted(times)


def _world_points(objects, limit: int = 200000) -> np.ndarray:
    """Positions the animation reaches (world space), for framing the camera."""
    chunks = []
    for obj in objects:
        m = np.array(obj.matrix_world, dtype=np.float64)
        if bw.animation_info(obj) is not None:
            pts = targets.animation_frames(obj).reshape(-1, 3)
        else:
            pts = np.array([c[:] for c in obj.bound_box], dtype=np.float64)
        if len(pts) > limit:
            pts = pts[np.linspace(0, len(pts) - 1, limit).astype(np.int64)]
        chunks.append(wb.to_world_space(pts, m))
    return np.concatenate(chunks).astype(np.float64)


@contextlib.contextmanager
def _swapped(settings: list[tuple[object, str, object]]):
    """Set attribute values for the duration; put the old ones back afterwards."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in settings]
    try:
        for owner, name, value in settings:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _load_pixels(path: Path, size: int) -> np.ndarray:
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = image.size
        px = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(image)
    if (w, h) != (size, size):
        raise PreviewError(f"the render came out {w} x {h} instead of {size} x {size}.")
    return px.reshape(h, w, 4)


def _save_png(sheet: np.ndarray, path: Path) -> None:
    h, w = sheet.shape[:2]
    image = bpy.data.images.new("AnimateAnyMesh Contact Sheet", w, h, alpha=False)
    try:
        image.pixels.foreach_set(sheet.ravel())
        image.filepath_raw = str(path)
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)


def contact_sheet(objects, path, *, size: int = 256, columns: int = 4,
                  max_tiles: int | None = None, times=None) -> Path:
    """Render the objects at each model frame with Workbench and write one PNG grid to `path`.
    Returns the path. The scene is left as it was."""
    objects = [o for o in objects if o is not None and o.type == "MESH"]
    if not objects:
        raise PreviewError("no mesh objects to preview.")
    if size < 16:
        raise PreviewError(f"preview tiles of {size} px are too small; use 16 or more.")
    times = pick_times(times if times is not None else animation_times(objects), max_tiles)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    context = bpy.context
    scene = context.scene
    location, forward, ortho_scale, clip_end = camera_frame(_world_points(objects))
    cam_data = bpy.data.cameras.new("AnimateAnyMesh Preview")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = ortho_scale
    cam_data.clip_start, cam_data.clip_end = 0.01, clip_end
    camera = bpy.data.objects.new("AnimateAnyMesh Preview", cam_data)
    from mathutils import Vector

    camera.location = Vector(location)
    camera.rotation_euler = Vector(forward).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(camera)
    keep = {o.name for o in objects}
    others = [o for o in scene.objects if o.name not in keep and o is not camera]
    render, shading = scene.render, scene.display.shading
    settings = [
        (scene, "camera", camera), (render, "engine", "BLENDER_WORKBENCH"),
        (render, "resolution_x", size), (render, "resolution_y", size),
        (render, "resolution_percentage", 100), (render, "pixel_aspect_x", 1.0),
        (render, "pixel_aspect_y", 1.0), (render, "film_transparent", True),
        (render, "filepath", render.filepath), (render, "use_file_extension", True),
        (render.image_settings, "file_format", "PNG"),
        (render.image_settings, "color_mode", "RGBA"),
        (scene.view_settings, "view_transform", "Standard"), (scene.view_settings, "look", "None"),
        (shading, "light", "STUDIO"), (shading, "color_type", "SINGLE"),
        (shading, "single_color", (0.8, 0.66, 0.47)), (shading, "show_cavity", False),
        (scene.display, "render_aa", "8"),
        *[(o, "hide_render", True) for o in others],
    ]
    frame = (scene.frame_current, scene.frame_subframe)
    tiles = []
    try:
        with tempfile.TemporaryDirectory(prefix="aam-preview-") as tmp, _swapped(settings):
            for i, t in enumerate(times):
                whole = math.floor(t)
                scene.frame_set(int(whole), subframe=float(t - whole))
                render.filepath = str(Path(tmp) / f"frame_{i:04d}")
                bpy.ops.render.render(write_still=True)
                tiles.append(_load_pixels(Path(tmp) / f"frame_{i:04d}.png", size))
    finally:
        scene.frame_set(frame[0], subframe=frame[1])
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(cam_data)
    labels = [f"{t:g}" for t in times]
    _save_png(compose(tiles, columns, labels), path)
    return path

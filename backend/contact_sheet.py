"""A contact sheet of an animation (PNG), rendered without Blender.

Flat-shaded triangles drawn far to near (painter's algorithm) with Pillow, from one fixed
three-quarter camera framed on the whole animation, so motion between frames is visible as
motion on the sheet. Good enough to see at a glance what a prompt did; the Blender add-on
renders proper previews with Workbench.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

LIGHT = np.array([0.4, -0.5, 0.77])


def view_matrix(azimuth_deg: float = 35.0, elevation_deg: float = 20.0) -> np.ndarray:
    """Rows: screen right, screen up, towards the viewer (Z-up world, camera looking at +Y-ish)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    forward = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), -math.sin(el)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, -forward])


def render_frame(vertices: np.ndarray, faces: np.ndarray, view: np.ndarray, center: np.ndarray,
                 half_extent: float, size: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (46, 46, 52))
    if len(faces) == 0:
        return image
    cam = (vertices - center) @ view.T
    px = (cam[:, 0] / half_extent * 0.45 + 0.5) * size
    py = (0.5 - cam[:, 1] / half_extent * 0.45) * size
    tri = cam[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    shade = 0.25 + 0.75 * np.abs(normals @ (view @ LIGHT))  # two-sided: meshes may be open
    order = np.argsort(tri[:, :, 2].mean(1))                  # far first
    draw = ImageDraw.Draw(image)
    base = np.array([200, 170, 120])
    for f in order:
        a, b, c = faces[f]
        color = tuple(int(v) for v in base * shade[f])
        draw.polygon([(px[a], py[a]), (px[b], py[b]), (px[c], py[c])], fill=color)
    return image


def contact_sheet(frames: np.ndarray, faces: np.ndarray, path: Path, *, size: int = 256,
                  columns: int = 4, max_faces: int = 60000) -> Path:
    """Write a grid of every frame of `frames` (T, N, 3) to `path` (PNG)."""
    from PIL import Image, ImageDraw

    frames = np.asarray(frames, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) > max_faces:  # a preview, not a render: thin very dense meshes evenly
        faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(np.int64)]
    view = view_matrix()
    lo, hi = frames.reshape(-1, 3).min(0), frames.reshape(-1, 3).max(0)
    center = (lo + hi) / 2
    half_extent = max(float(np.abs((frames.reshape(-1, 3) - center) @ view[:2].T).max()), 1e-9)
    t = frames.shape[0]
    rows = math.ceil(t / columns)
    sheet = Image.new("RGB", (columns * size, rows * size), (30, 30, 34))
    for i in range(t):
        tile = render_frame(frames[i], faces, view, center, half_extent, size)
        ImageDraw.Draw(tile).text((6, 4), f"{i}", fill=(235, 235, 235))
        sheet.paste(tile, ((i % columns) * size, (i // columns) * size))
    return _save(sheet, path)


def takes_sheet(takes: np.ndarray, faces: np.ndarray, path: Path, seeds, *, size: int = 192,
                columns: int = 8, max_faces: int = 60000) -> Path:
    """One row per take of `takes` (K, T, N, 3), `columns` frames evenly spread over each, all
    from the same camera so the takes compare side by side."""
    from PIL import Image, ImageDraw

    takes = np.asarray(takes, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) > max_faces:
        faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(np.int64)]
    view = view_matrix()
    points = takes.reshape(-1, 3)
    center = (points.min(0) + points.max(0)) / 2
    half_extent = max(float(np.abs((points - center) @ view[:2].T).max()), 1e-9)
    chosen = np.unique(np.linspace(0, takes.shape[1] - 1, columns).round().astype(np.int64))
    sheet = Image.new("RGB", (len(chosen) * size, takes.shape[0] * size), (30, 30, 34))
    for row, (clip, seed) in enumerate(zip(takes, seeds)):
        for column, frame in enumerate(chosen):
            tile = render_frame(clip[frame], faces, view, center, half_extent, size)
            label = f"take {row + 1}  seed {seed}" if column == 0 else f"{frame}"
            ImageDraw.Draw(tile).text((6, 4), label, fill=(235, 235, 235))
            sheet.paste(tile, (column * size, row * size))
    return _save(sheet, path)


def _save(sheet, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:  # whole or not at all: an earlier sheet survives a failed write
        sheet.save(partial, format="PNG")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path

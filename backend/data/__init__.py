"""Training data for our own models (numpy only: no torch, no bpy).

- `sample`      MotionSample, resample_frames, apply_vertex_budget
- `readers`     DyMesh .bin (restricted unpickler) and DeformingThings4D .anime readers
- `shards`      the .npz shard format: write_shard, read_shard, iter_dataset
- `procedural`  the seeded procedural set: generate, sample_at, write_dataset, FAMILIES
                (built from `geometry`, `creatures`, `motions` and `captions`)

Blender scenes become shards inside Blender (`tools/blender_scene_to_shard.py`).
"""

from backend.data.errors import DatasetError, UnsafePickleError
from backend.data.readers import read_anime, read_dymesh_bin, write_anime
from backend.data.sample import MotionSample, apply_vertex_budget, resample_frames
from backend.data.shards import iter_dataset, read_shard, write_shard

__all__ = [
    "DatasetError", "UnsafePickleError", "MotionSample", "apply_vertex_budget", "resample_frames",
    "read_anime", "read_dymesh_bin", "write_anime", "iter_dataset", "read_shard", "write_shard",
]

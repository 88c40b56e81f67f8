"""The seam between Blender and the backend: everything that crosses the process boundary.

Both halves load this package: the backend imports it as `aam_seam`, the add-on loads it from
the folder it ships in (see `animateanymesh_addon/seam.py`), so neither keeps a copy. It uses the
standard library and numpy only: no torch (Blender has none) and no bpy (the backend has none).

    protocol   the typed, versioned line messages
    codes      every error code, one enum, and how each half treats them
    limits     the ranges a request must fall in (seed, steps, tokens, prompt, line size)
    stages     the stage names of a job and how they map onto one progress bar
    atomic     files written whole or not at all (both halves write results)
    arrays     the request mesh and result `.npz` files
    batch      the jobs file and event lines of `python -m backend batch`
    shards     the dataset shard format (training data), written by the backend and by Blender
"""

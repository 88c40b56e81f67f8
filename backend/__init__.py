"""AnimateAnyMesh backend: runs the models in its own process (torch + numpy, never bpy).

Importing this package must stay cheap and torch-free: the Blender add-on and the protocol share
it, and torch is only pulled in by the modules that need it.
"""

__version__ = "0.1.0"

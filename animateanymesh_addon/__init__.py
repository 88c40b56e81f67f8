"""AnimateAnyMesh: animate any mesh from a text prompt (Blender extension).

bpy and the Blender-facing modules are imported inside register(), so the pure modules
(`writeback`) import anywhere, e.g. in the test suite, without starting Blender.
"""


def _classes():
    from . import export

    return (*export.CLASSES,)


def register():
    import bpy

    for cls in _classes():
        bpy.utils.register_class(cls)


def unregister():
    import bpy

    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)

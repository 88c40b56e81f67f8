"""AnimateAnyMesh: animate any mesh from a text prompt (Blender extension).

bpy and the Blender-facing modules are imported inside register(), so the pure modules
(`writeback`, `batch`, `backend_setup`) import anywhere, e.g. in the test suite, without
starting Blender.
"""


def _modules():
    from . import export, operators, panel, preferences, props

    # props first: the operators and panels read scene.animateanymesh
    return (props, export, operators, preferences, panel)


def _on_load_pre(*_args):
    # A run in progress belongs to the file being closed: stop it (nothing is written).
    from . import session, targets

    run = session.active_run()
    if run is not None:
        run.abandon()
    targets.before_unload()


def _on_load_post(*_args):
    import bpy

    from . import session, targets

    session.forget_queue()  # the next look reads the new file's own queue
    targets.after_load(bpy.data.filepath)


def _on_save_pre(path="", *_args):
    # Blender passes the path being written (Save As: the new one, while bpy.data.filepath is
    # still the old one).
    import bpy

    from . import targets

    targets.before_save(path or bpy.data.filepath)


def _handlers():
    import bpy

    from bpy.app.handlers import persistent

    return ((bpy.app.handlers.load_pre, persistent(_on_load_pre)),
            (bpy.app.handlers.load_post, persistent(_on_load_post)),
            (bpy.app.handlers.save_pre, persistent(_on_save_pre)))


_registered_handlers = []


def register():
    import bpy

    for module in _modules():
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    from . import props

    props.register()
    for collection, handler in _handlers():
        collection.append(handler)
        _registered_handlers.append((collection, handler))


def unregister():
    import bpy

    from . import props, session

    while _registered_handlers:
        collection, handler = _registered_handlers.pop()
        if handler in collection:
            collection.remove(handler)
    run = session.active_run()
    if run is not None:
        run.abandon()
    session.forget_client()  # stops the backend process
    props.unregister()
    for module in reversed(_modules()):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)

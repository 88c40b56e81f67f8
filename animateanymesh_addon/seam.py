"""The seam package (`aam_seam`), loaded from where this add-on ships it.

The installed extension carries `aam_seam/` inside its own folder; a development checkout has it
next to this package. An add-on must not change sys.path inside Blender, so the package is loaded
by file path, once, under a private module name (dataclasses and enums look their module up in
sys.modules, and the private name never shadows a real package). The seam is standard library
plus numpy, so loading it inside Blender is safe.

    from .seam import arrays, atomic, batch, codes, limits, protocol, shards, stages
    from .seam import ErrorCode, Polygons, SeamError, Stage   # the names used most
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_NAME = "_animateanymesh_seam"


def seam_dir() -> Path:
    """The aam_seam folder: inside the installed extension, else beside this package."""
    for root in (_HERE, _HERE.parent):
        if (root / "aam_seam" / "__init__.py").is_file():
            return root / "aam_seam"
    raise ImportError(f"the aam_seam package is missing from {_HERE} and {_HERE.parent}: "
                      "reinstall the extension.")


def _load_package():
    loaded = sys.modules.get(_NAME)
    if loaded is not None:
        return loaded
    folder = seam_dir()
    spec = importlib.util.spec_from_file_location(_NAME, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        del sys.modules[_NAME]
        raise
    return package


_load_package()
arrays = importlib.import_module(f"{_NAME}.arrays")
atomic = importlib.import_module(f"{_NAME}.atomic")
batch = importlib.import_module(f"{_NAME}.batch")
codes = importlib.import_module(f"{_NAME}.codes")
limits = importlib.import_module(f"{_NAME}.limits")
protocol = importlib.import_module(f"{_NAME}.protocol")
shards = importlib.import_module(f"{_NAME}.shards")
stages = importlib.import_module(f"{_NAME}.stages")

ErrorCode = codes.ErrorCode
SeamError = codes.SeamError
Stage = stages.Stage
Polygons = arrays.Polygons

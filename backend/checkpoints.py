"""Former home of the model-folder reader and the official import, now in backend.model_folder and
backend.official_import. These two names stay importable from here only until the test files
owned by the concurrent server and add-on work (tests/backend/test_server_client.py,
tests/blender/test_blender_addon.py) import them from their new modules; then delete this file.
"""

from .model_folder import load_model  # noqa: F401
from .official_import import import_official  # noqa: F401

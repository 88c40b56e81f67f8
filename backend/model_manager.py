"""Model names -> model directories, and the optional download of the official weights.

Names:  "default"  the embedded model shipped with the tool (works offline),
        "official" the converted official AnimateAnyMesh checkpoint in the user cache,
        any other name: a directory under the cache's models/ folder,
        a path:   a model directory anywhere.
The cache is `$ANIMATEANYMESH_HOME` if set, else ~/.cache/animateanymesh; the Blender add-on
passes its own extension user folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .config import CONFIG_NAME
from .errors import ModelNotFoundError, UserError

OFFICIAL_REPO = "JarrentWu/AnimateAnyMesh"
OFFICIAL_FILES = (
    "checkpoints/dvae/dvae_f.pth",
    "checkpoints/rf_model/rf_epoch_f.pth",
    "checkpoints/rf_model/training_config.json",
    "checkpoints/dvae_factors/dvae_f.json",
)
EMBEDDED_DIR = Path(__file__).resolve().parent / "default_model"


def cache_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("ANIMATEANYMESH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "animateanymesh"


def resolve_model(name_or_path: str | Path | None, cache: str | Path | None = None) -> Path:
    """The directory of a model, or a ModelNotFoundError that says how to get it."""
    name = str(name_or_path or "default")
    path = Path(name).expanduser()
    if path.is_dir() or os.sep in name or name.startswith("."):
        if not (path / CONFIG_NAME).is_file():
            raise ModelNotFoundError(f"{path} is not a model directory (no {CONFIG_NAME} inside). "
                                     "Give a folder written by `python -m backend import-official`, "
                                     "or a model name: default, official.")
        return path
    if name == "default":
        if (EMBEDDED_DIR / CONFIG_NAME).is_file():
            return EMBEDDED_DIR
        raise ModelNotFoundError(
            f"the embedded default model is not installed ({EMBEDDED_DIR} has no {CONFIG_NAME}). "
            "Reinstall the tool, or use the official weights: `python -m backend download-official` "
            "(or import-official for files you already have) and pass --model official.")
    target = cache_dir(cache) / "models" / name
    if (target / CONFIG_NAME).is_file():
        return target
    if name == "official":
        raise ModelNotFoundError(official_missing_message(cache))
    raise ModelNotFoundError(f"no model named '{name}' in {target.parent}; known names: "
                             f"{', '.join(list_models(cache)) or 'none yet'} (and 'default').")


def official_missing_message(cache: str | Path | None = None) -> str:
    target = cache_dir(cache) / "models" / "official"
    files = "\n".join(f"  SRC/{f}" for f in OFFICIAL_FILES)
    return ("the official AnimateAnyMesh weights are not installed. Online: run "
            "`python -m backend download-official` (about 1 GB from Hugging Face "
            f"'{OFFICIAL_REPO}'). Offline: copy these files from the release into a folder SRC,\n{files}\n"
            f"then run `python -m backend import-official SRC --out {target}`.")


def list_models(cache: str | Path | None = None) -> list[str]:
    root = cache_dir(cache) / "models"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_NAME).is_file())


def download_official(cache: str | Path | None = None, *, revision: str | None = None) -> Path:
    """Download the four official files (progress bars from huggingface_hub) and convert them.

    Only runs when the user asks for it; everything else in the tool stays offline.
    """
    from .official_import import import_official

    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise UserError("downloading needs the package huggingface_hub: pip install huggingface_hub") from exc
    staging = Path(tempfile.mkdtemp(prefix="aam-official-", dir=cache_dir(cache)
                                    if cache_dir(cache).exists() else None))
    try:
        for name in OFFICIAL_FILES:
            try:
                hf_hub_download(OFFICIAL_REPO, name, revision=revision, local_dir=staging)
            except Exception as exc:  # offline, proxy, 404: all end in the same advice
                raise ModelNotFoundError(
                    f"could not download {name} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).\n"
                    + official_missing_message(cache)) from None
        target = cache_dir(cache) / "models" / "official"
        import_official(staging, target, name="official")
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""A model folder: the one place that writes one and the one place that reads one.

Everything that makes or changes a model folder (import-official, `train flow`, scripts/ship_vae.py)
goes through `write_model_folder`; everything that uses one goes through `load_model` (networks
ready to run) or `read_model_folder` (the stored tensors and files, to write a changed copy).
A folder holds safetensors and JSON, nothing executable:

    MODEL_DIR/config.json               sizes, text encoder, latent stats, compat switches
    MODEL_DIR/vae.safetensors           DyMeshVAE weights (official key names)
    MODEL_DIR/flow.safetensors          DyMeshMMDiT weights (official key names)
    MODEL_DIR/text_encoder.safetensors  CLIP text tower (open_clip key names), clip-sd15 only
    MODEL_DIR/vocabulary.json           optional: the words its flow was trained on
    MODEL_DIR/tokenizer/                optional: vocab.json + merges.txt
    MODEL_DIR/README.md                 optional: provenance or model card

Each file is written atomically (see aam_seam.atomic), so a failed write never leaves a truncated
weights file under its real name for the reader to trip over later.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from aam_seam.atomic import write_text_atomically, write_through_path

from .config import ModelConfig
from .errors import CheckpointError
from .models.flow import DyMeshMMDiT
from .models.text.encoders import build_text_encoder_from_config
from .models.vae import DyMeshVAE
from .vocabulary import Vocabulary, load_vocabulary

WEIGHT_FILES = {"vae": "vae.safetensors", "flow": "flow.safetensors", "text": "text_encoder.safetensors"}
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
README_NAME = "README.md"


@dataclass
class ModelFolder:
    """What a model folder stores, as data: the writer takes one, `read_model_folder` gives one."""

    config: ModelConfig
    weights: dict[str, Mapping[str, torch.Tensor]]  # by WEIGHT_FILES key; "text" for clip-sd15 only
    vocabulary: Vocabulary | None = None
    tokenizer_dir: Path | None = None  # a folder holding TOKENIZER_FILES, copied in
    readme: str = ""


@dataclass
class LoadedModel:
    config: ModelConfig
    vae: DyMeshVAE
    flow: DyMeshMMDiT
    text_encoder: nn.Module
    directory: Path
    vocabulary: Vocabulary | None = None  # the words its flow was trained on, where the folder lists them


def weight_parts(config: ModelConfig) -> tuple[str, ...]:
    """The weight files a folder needs: MiniLM brings its own weights, CLIP's live in the folder."""
    return ("vae", "flow", "text") if config.text.kind == "clip-sd15" else ("vae", "flow")


# ----------------------------------------------------------------------------- writing

def write_model_folder(directory: Path, folder: ModelFolder) -> Path:
    """Write (or overwrite) a model folder. config.json goes last: a folder counts as a model
    (model_manager.list_models) once it has one, so it must not appear before the weights do."""
    directory = Path(directory)
    parts = weight_parts(folder.config)
    missing = [part for part in parts if part not in folder.weights]
    if missing:
        raise ValueError(f"a {folder.config.text.kind} model folder needs {', '.join(missing)} weights")
    directory.mkdir(parents=True, exist_ok=True)
    for part in parts:
        write_weights(directory / WEIGHT_FILES[part], folder.weights[part])
    if folder.tokenizer_dir is not None:
        _copy_tokenizer(Path(folder.tokenizer_dir), directory / TOKENIZER_DIR)
    if folder.vocabulary is not None:
        folder.vocabulary.save(directory)
    if folder.readme:
        write_text_atomically(directory / README_NAME, folder.readme)
    folder.config.save(directory)
    return directory


def write_weights(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # safetensors refuses non-contiguous tensors, which a converted checkpoint's can be
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    write_through_path(path, lambda partial: save_file(tensors, str(partial)))


def _copy_tokenizer(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        write_through_path(target / name, lambda partial: shutil.copyfile(source / name, partial))


# ----------------------------------------------------------------------------- reading

def read_model_folder(directory: Path) -> ModelFolder:
    """The folder's contents as stored (weights keep their dtype), to write a changed copy."""
    directory = Path(directory)
    config = ModelConfig.load(directory)
    readme = directory / README_NAME
    return ModelFolder(
        config=config,
        weights={part: read_safetensors(directory / WEIGHT_FILES[part]) for part in weight_parts(config)},
        vocabulary=load_vocabulary(directory),
        tokenizer_dir=_tokenizer_dir(directory),
        readme=readme.read_text() if readme.is_file() else "")


def load_model(directory: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the three networks from config.json and load their safetensors, strictly."""
    directory = Path(directory)
    config = ModelConfig.load(directory)
    # The sizes in config.json are checked against the weight files before anything is allocated:
    # otherwise a config that says dim 100000 builds (and initialises) networks of hundreds of GB
    # before the weights could say they do not fit.
    with torch.device("meta"):  # MiniLM brings its own weights: its folder holds no text sizes
        check_weight_shapes(directory, config, _build_networks(directory, config, weight_parts(config)))
    modules = _build_networks(directory, config, ("vae", "flow", "text"))
    for part in weight_parts(config):  # one file at a time: a file's tensors go once it is loaded
        state = read_safetensors(directory / WEIGHT_FILES[part])
        check_state_dict(modules[part], state, f"{directory.name}/{WEIGHT_FILES[part]}")
        modules[part].load_state_dict(state, strict=True)
    vae, flow, text_encoder = modules["vae"], modules["flow"], modules["text"]
    for module in modules.values():
        module.eval().requires_grad_(False).to(device)
    return LoadedModel(config, vae, flow, text_encoder, directory, load_vocabulary(directory))


def _build_networks(directory: Path, config: ModelConfig, parts) -> dict[str, nn.Module]:
    modules = {"vae": DyMeshVAE(config.vae), "flow": DyMeshMMDiT(config.flow, config.text.width)}
    if "text" in parts:
        modules["text"] = build_text_encoder_from_config(config.text, tokenizer_dir=_tokenizer_dir(directory))
    return modules


def check_weight_shapes(directory: Path, config: ModelConfig, modules: dict[str, nn.Module]) -> None:
    """check_state_dict against the shapes in the weight files' headers, no tensor read."""
    for part in weight_parts(config):
        shapes = read_safetensors_shapes(directory / WEIGHT_FILES[part])
        stand_ins = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
        check_state_dict(modules[part], stand_ins, f"{directory.name}/{WEIGHT_FILES[part]}")


def read_safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    def shapes():
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    return _read_weights_file(path, shapes)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return _read_weights_file(path, lambda: load_file(str(path)))


def _read_weights_file(path: Path, read):
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the model directory; re-import or re-download the model.")
    try:
        return read()
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {str(exc).splitlines()[0][:200]}. The file is "
                              "truncated or corrupted; re-import or re-download the model.") from None


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Strict key and shape check with an error that names every offending key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches: {'; '.join(wrong)}")
    if problems:
        raise CheckpointError(f"{what} does not fit its config — " + " | ".join(problems) +
                              ". The checkpoint and config.json come from different models; "
                              "re-import or re-download the model.")


def _tokenizer_dir(directory: Path) -> Path | None:
    folder = directory / TOKENIZER_DIR
    return folder if folder.is_dir() else None

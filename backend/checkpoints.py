"""Reading official checkpoints safely and writing/reading our model directories.

Official files are PyTorch pickles. We open them only with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers, so a tampered file cannot run code. Our own
model directories hold safetensors + config.json and nothing executable:

    MODEL_DIR/config.json             sizes, text encoder, latent stats, compat switches
    MODEL_DIR/vae.safetensors         DyMeshVAE weights (official key names)
    MODEL_DIR/flow.safetensors        DyMeshMMDiT weights (official key names)
    MODEL_DIR/text_encoder.safetensors  CLIP text tower (open_clip key names), clip-sd15 only
    MODEL_DIR/tokenizer/              optional vocab.json + merges.txt
    MODEL_DIR/README.md               provenance
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import (CompatConfig, FlowConfig, LatentStats, ModelConfig, TextEncoderConfig,
                     VAEConfig)
from .errors import CheckpointError
from .models.flow import DyMeshMMDiT
from .models.vae import DyMeshVAE
from .vocabulary import Vocabulary, load_vocabulary

CLIP_PREFIX = "clip_text_model.text_model."
WEIGHT_FILES = {"vae": "vae.safetensors", "flow": "flow.safetensors", "text": "text_encoder.safetensors"}
OFFICIAL_PAD_TO = 4096  # test_drive.py's default max_length


# ----------------------------------------------------------------------------- official files

def read_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from an official .pth: raw, under `model_state_dict`, with or without `module.`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle opcodes, wrong file type...
        raise CheckpointError(
            f"cannot read {path.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}. "
            "The file is truncated, corrupted or not a PyTorch checkpoint (only tensor-only "
            "checkpoints are accepted); download it again.") from None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name} holds no state dict (found {type(obj).__name__}).")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path.name}: entry {key!r} is not a tensor; not a model state dict.")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
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


@dataclass
class OfficialLayout:
    vae: Path
    flow: Path
    stats: Path
    training_config: Path


def resolve_official_layout(src: Path, rf_exp: str = "rf_model", rf_epoch: str = "f") -> OfficialLayout:
    """Find the files the way test_drive.py does, starting from `src` or `src/checkpoints`."""
    src = Path(src)
    root = src / "checkpoints" if (src / "checkpoints").is_dir() else src
    training_config = root / rf_exp / "training_config.json"
    if not training_config.is_file():
        raise CheckpointError(
            f"{training_config} not found. Point import-official at the folder holding "
            "checkpoints/ from the official release (files: checkpoints/dvae/dvae_f.pth, "
            "checkpoints/rf_model/rf_epoch_f.pth, checkpoints/rf_model/training_config.json, "
            "checkpoints/dvae_factors/dvae_f.json).")
    args = json.loads(training_config.read_text()).get("training_args", {})
    vae_exp = args.get("vae_exp_dependency", "dvae")
    vae_epoch = args.get("vae_epoch_dependency", "f")
    layout = OfficialLayout(vae=root / vae_exp / f"{vae_exp}_{vae_epoch}.pth",
                            flow=root / rf_exp / f"rf_epoch_{rf_epoch}.pth",
                            stats=root / "dvae_factors" / f"{vae_exp}_{vae_epoch}.json",
                            training_config=training_config)
    for name in ("vae", "flow", "stats"):
        if not getattr(layout, name).is_file():
            raise CheckpointError(f"{getattr(layout, name)} not found (needed by "
                                  f"{training_config.name}); the official checkpoint folder is incomplete.")
    return layout


def vae_config_from_official(values: dict, state: dict[str, torch.Tensor]) -> VAEConfig:
    known = {f for f in VAEConfig.__dataclass_fields__}
    # The official trainer writes `norm_type`, which the model itself never accepted: ignore it.
    cfg = VAEConfig(**{k: v for k, v in values.items() if k in known})
    if "heads" not in values or "dim_head" not in values:
        inner = state["dec_blocks.0.0.attn.to_q.weight"].shape[0]
        if cfg.heads * cfg.dim_head != inner:
            raise CheckpointError(f"vae_config names no heads/dim_head and the default 8x64 does not fit "
                                  f"the weights (inner width {inner}); add them to training_config.json.")
    return cfg


def import_official(src: Path, out: Path, *, clip_config: Path | None = None,
                    tokenizer_dir: Path | None = None, rf_exp: str = "rf_model", rf_epoch: str = "f",
                    pad_to: int = OFFICIAL_PAD_TO, name: str = "official") -> ModelConfig:
    """Convert an official checkpoint folder into our model directory (safetensors + JSON)."""
    from safetensors.torch import save_file

    from .models import text as text_models

    layout = resolve_official_layout(src, rf_exp, rf_epoch)
    training = json.loads(layout.training_config.read_text())
    vae_state = read_official_state_dict(layout.vae)
    rf_state = read_official_state_dict(layout.flow)
    clip_hf = {k: v for k, v in rf_state.items() if k.startswith("clip_text_model.")}
    flow_state = {k: v for k, v in rf_state.items() if not k.startswith("clip_text_model.")}
    if not clip_hf:
        raise CheckpointError(f"{layout.flow.name} holds no clip_text_model.* weights; the official "
                              "flow checkpoint carries its CLIP text encoder.")

    vae_cfg = vae_config_from_official(training.get("vae_config", {}), vae_state)
    rf_values = training.get("rf_config", {})
    flow_cfg = FlowConfig(**{k: v for k, v in rf_values.items() if k in FlowConfig.__dataclass_fields__})
    text_cfg = text_models.clip_config_from_weights(clip_hf, CLIP_PREFIX, clip_config)
    stats = LatentStats(**json.loads(layout.stats.read_text()))

    vae = DyMeshVAE(vae_cfg)
    check_state_dict(vae, vae_state, layout.vae.name)
    flow = DyMeshMMDiT(flow_cfg, text_cfg.width)
    check_state_dict(flow, flow_state, layout.flow.name)
    text_encoder = text_models.build_text_encoder_from_config(text_cfg)
    text_state = text_models.hf_to_open_clip_state_dict(clip_hf, CLIP_PREFIX)
    check_state_dict(text_encoder, text_state, f"{layout.flow.name} (clip_text_model)")

    config = ModelConfig(
        name=name, vae=vae_cfg, flow=flow_cfg, text=text_cfg, stats=stats,
        compat=CompatConfig(pad_to=pad_to, replace_index_zero=True),
        provenance=f"imported from the official AnimateAnyMesh checkpoint {Path(src).resolve()}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(vae_state), str(out / WEIGHT_FILES["vae"]))
    save_file(_contiguous(flow_state), str(out / WEIGHT_FILES["flow"]))
    save_file(_contiguous(text_state), str(out / WEIGHT_FILES["text"]))
    if tokenizer_dir is not None:
        (out / "tokenizer").mkdir(exist_ok=True)
        for fname in ("vocab.json", "merges.txt"):
            shutil.copyfile(Path(tokenizer_dir) / fname, out / "tokenizer" / fname)
    config.save(out)
    sources = "\n".join(f"- `{p.name}` sha256 {_sha256(p)}" for p in
                        (layout.vae, layout.flow, layout.stats, layout.training_config))
    (out / "README.md").write_text(
        f"# {name}\n\nAnimateAnyMesh weights converted by `python -m backend import-official` "
        f"from `{Path(src).resolve()}`.\nConverted to safetensors; values unchanged.\n\nSources:\n{sources}\n")
    return config


def _contiguous(state):
    return {k: v.detach().contiguous() for k, v in state.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- our model directories

@dataclass
class LoadedModel:
    config: ModelConfig
    vae: DyMeshVAE
    flow: DyMeshMMDiT
    text_encoder: nn.Module
    directory: Path
    vocabulary: Vocabulary | None = None  # the words its flow was trained on, where the folder lists them


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the model directory; re-import or re-download the model.")
    try:
        return load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {str(exc).splitlines()[0][:200]}. The file is "
                              "truncated or corrupted; re-import or re-download the model.") from None


def load_model(directory: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the three networks from config.json and load their safetensors, strictly."""
    from .models import text as text_models

    directory = Path(directory)
    config = ModelConfig.load(directory)
    vae = DyMeshVAE(config.vae)
    flow = DyMeshMMDiT(config.flow, config.text.width)
    text_encoder = text_models.build_text_encoder_from_config(
        config.text, tokenizer_dir=directory / "tokenizer" if (directory / "tokenizer").is_dir() else None)
    parts = [(vae, "vae"), (flow, "flow")]
    if config.text.kind == "clip-sd15":
        parts.append((text_encoder, "text"))
    for module, key in parts:
        state = read_safetensors(directory / WEIGHT_FILES[key])
        check_state_dict(module, state, f"{directory.name}/{WEIGHT_FILES[key]}")
        module.load_state_dict(state, strict=True)
    for module in (vae, flow, text_encoder):
        module.eval().requires_grad_(False).to(device)
    return LoadedModel(config, vae, flow, text_encoder, directory, load_vocabulary(directory))


def save_model(directory: Path, config: ModelConfig, vae: DyMeshVAE, flow: DyMeshMMDiT,
               text_encoder: nn.Module | None = None, readme: str = "") -> None:
    """Write a model directory of our own (used by training and by the tests' tiny models)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(vae.state_dict()), str(directory / WEIGHT_FILES["vae"]))
    save_file(_contiguous(flow.state_dict()), str(directory / WEIGHT_FILES["flow"]))
    if config.text.kind == "clip-sd15":
        if text_encoder is None:
            raise ValueError("a clip-sd15 model directory needs the text encoder weights")
        save_file(_contiguous(text_encoder.state_dict()), str(directory / WEIGHT_FILES["text"]))
    config.save(directory)
    if readme:
        (directory / "README.md").write_text(readme)

"""The official AnimateAnyMesh release -> one of our model folders (`python -m backend import-official`).

Official files are PyTorch pickles. We open them only with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers, so a tampered file cannot run code. What comes
out is an ordinary model folder (see model_folder), written by the same writer as our own models.

The official flow checkpoint carries its CLIP text encoder under Hugging Face names; the import
splits it off and renames it to open_clip's, so the folder's three weight files each load into one
of our networks as they are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import CompatConfig, FlowConfig, LatentStats, ModelConfig, VAEConfig
from .errors import CheckpointError
from .model_folder import ModelFolder, check_state_dict, write_model_folder
from .models.flow import DyMeshMMDiT
from .models.text.clip_weights import DEFAULT_HF_PREFIX, clip_config_from_weights, hf_to_open_clip_state_dict
from .models.text.encoders import build_text_encoder_from_config
from .models.vae import DyMeshVAE

CLIP_KEYS = "clip_text_model."  # the flow checkpoint's keys that belong to its text encoder
OFFICIAL_PAD_TO = 4096  # test_drive.py's default max_length


@dataclass
class OfficialLayout:
    vae: Path
    flow: Path
    stats: Path
    training_config: Path


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
    layout = resolve_official_layout(src, rf_exp, rf_epoch)
    training = json.loads(layout.training_config.read_text())
    vae_state = read_official_state_dict(layout.vae)
    flow_state, clip_hf = split_text_encoder(read_official_state_dict(layout.flow), layout.flow.name)

    vae_cfg = vae_config_from_official(training.get("vae_config", {}), vae_state)
    rf_values = training.get("rf_config", {})
    flow_cfg = FlowConfig(**{k: v for k, v in rf_values.items() if k in FlowConfig.__dataclass_fields__})
    text_cfg = clip_config_from_weights(clip_hf, DEFAULT_HF_PREFIX, clip_config)
    stats = LatentStats(**json.loads(layout.stats.read_text()))

    check_state_dict(DyMeshVAE(vae_cfg), vae_state, layout.vae.name)
    check_state_dict(DyMeshMMDiT(flow_cfg, text_cfg.width), flow_state, layout.flow.name)
    text_encoder = build_text_encoder_from_config(text_cfg)
    text_state = hf_to_open_clip_state_dict(clip_hf, DEFAULT_HF_PREFIX)
    check_state_dict(text_encoder, text_state, f"{layout.flow.name} (clip_text_model)")

    config = ModelConfig(
        name=name, vae=vae_cfg, flow=flow_cfg, text=text_cfg, stats=stats,
        compat=CompatConfig(pad_to=pad_to, replace_index_zero=True),
        provenance=f"imported from the official AnimateAnyMesh checkpoint {Path(src).resolve()}")
    write_model_folder(out, ModelFolder(
        config, {"vae": vae_state, "flow": flow_state, "text": text_state},
        tokenizer_dir=tokenizer_dir, readme=_provenance_readme(name, src, layout)))
    return config


def split_text_encoder(rf_state: dict[str, torch.Tensor], source: str
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(flow weights, CLIP text weights under HF names) of an official flow checkpoint."""
    clip_hf = {k: v for k, v in rf_state.items() if k.startswith(CLIP_KEYS)}
    if not clip_hf:
        raise CheckpointError(f"{source} holds no clip_text_model.* weights; the official "
                              "flow checkpoint carries its CLIP text encoder.")
    return {k: v for k, v in rf_state.items() if not k.startswith(CLIP_KEYS)}, clip_hf


def _provenance_readme(name: str, src: Path, layout: OfficialLayout) -> str:
    sources = "\n".join(f"- `{p.name}` sha256 {_sha256(p)}" for p in
                        (layout.vae, layout.flow, layout.stats, layout.training_config))
    return (f"# {name}\n\nAnimateAnyMesh weights converted by `python -m backend import-official` "
            f"from `{Path(src).resolve()}`.\nConverted to safetensors; values unchanged.\n\nSources:\n{sources}\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

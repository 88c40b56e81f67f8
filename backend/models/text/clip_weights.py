"""CLIP text weights: Hugging Face `CLIPTextModel` names and sizes -> open_clip's `TextTransformer`.

Checkpoints (the official flow's included) store CLIP under HF key names, while the encoder is
built from open_clip's pieces; this module maps one onto the other strictly and reads the sizes
a model config needs from the tensors themselves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import regex
import torch

from ...config import TextEncoderConfig
from ...errors import CheckpointError

DEFAULT_HF_PREFIX = "clip_text_model.text_model."
SD15_DIMS = {"width": 768, "layers": 12, "heads": 12}


@dataclass
class ClipTextConfig:
    """The fields of a Hugging Face `CLIPTextConfig` that this encoder needs."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int = 49408
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "the CLIP text config") -> "ClipTextConfig":
        if "hidden_size" not in data and isinstance(data.get("text_config"), Mapping):
            data = data["text_config"]  # a full CLIPConfig: use its text half
        required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        missing = [k for k in required if k not in data]
        if missing:
            raise CheckpointError(
                f"{source} lacks {', '.join(missing)}. Pass the text encoder's config.json "
                "(a Hugging Face CLIPTextConfig, e.g. SD-1.5's text_encoder/config.json)."
            )
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name, value in fields.items():
            if name == "hidden_act":
                ok = isinstance(value, str)
            elif name == "layer_norm_eps":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
            else:  # a size: a whole number a network can be built with
                ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1_000_000
            if not ok:
                raise CheckpointError(f"{source}: {name} is {value!r}, which cannot describe this "
                                      "text encoder. Pass the config.json that belongs to these weights.")
        config = cls(**fields)
        if config.hidden_act != "quick_gelu":
            raise CheckpointError(
                f"{source} uses hidden_act={config.hidden_act!r}, but this encoder implements the "
                "SD-1.5 / OpenAI CLIP text model, whose activation is 'quick_gelu'. Use the config "
                "that belongs to these weights."
            )
        if config.hidden_size % config.num_attention_heads:
            raise CheckpointError(
                f"{source}: hidden_size {config.hidden_size} is not divisible by "
                f"num_attention_heads {config.num_attention_heads}."
            )
        return config


def read_clip_text_config(path: str | os.PathLike) -> ClipTextConfig:
    """Read a Hugging Face CLIPTextConfig JSON file (heads, activation, LayerNorm eps, sizes)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"CLIP text config {path} does not exist. It is the text encoder's config.json "
            "(for SD-1.5: the 'text_encoder' folder); the head count cannot be read from weights."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"CLIP text config {path} is not valid JSON ({exc}).") from exc
    return ClipTextConfig.from_dict(data, source=str(path))


def _layer_names(i: int) -> list[tuple[str, str]]:
    """(HF suffix, open_clip suffix) for the one-to-one tensors of layer i."""
    hf, oc = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
    pairs = [
        ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
        ("self_attn.out_proj", "attn.out_proj"),
        ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
    ]
    return [(f"{hf}{h}.{p}", f"{oc}{o}.{p}") for h, o in pairs for p in ("weight", "bias")]


def _clip_layer_count(keys, prefix: str) -> int:
    pattern = regex.compile(regex.escape(prefix) + r"encoder\.layers\.(\d+)\.")
    indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _require_prefix(hf_sd: Mapping[str, torch.Tensor], prefix: str) -> None:
    if not any(k.startswith(prefix) for k in hf_sd):
        sample = ", ".join(sorted(hf_sd)[:3]) or "none"
        raise CheckpointError(
            f"No CLIP text-model keys start with {prefix!r} (first keys: {sample}). Pass the "
            "prefix under which the Hugging Face CLIPTextModel's 'embeddings.*' / 'encoder.*' keys sit."
        )


def infer_clip_dims(hf_sd: Mapping[str, torch.Tensor], prefix: str = DEFAULT_HF_PREFIX
                    ) -> tuple[int, int, int, int]:
    """(width, layers, vocab, context) read from the tensor shapes of a HF CLIPTextModel."""
    _require_prefix(hf_sd, prefix)
    for name in ("embeddings.token_embedding.weight", "embeddings.position_embedding.weight"):
        if prefix + name not in hf_sd:
            raise CheckpointError(f"The CLIP text weights lack {prefix + name}.")
    vocab, width = hf_sd[prefix + "embeddings.token_embedding.weight"].shape
    context, pos_width = hf_sd[prefix + "embeddings.position_embedding.weight"].shape
    if pos_width != width:
        raise CheckpointError(
            f"CLIP token embedding width {width} differs from position embedding width {pos_width}."
        )
    layers = _clip_layer_count(hf_sd, prefix)
    if layers == 0:
        raise CheckpointError(f"The CLIP text weights under {prefix!r} have no encoder layers.")
    return int(width), layers, int(vocab), int(context)


def hf_to_open_clip_state_dict(hf_sd: Mapping[str, torch.Tensor], prefix: str = DEFAULT_HF_PREFIX
                               ) -> dict[str, torch.Tensor]:
    """Map HF `CLIPTextModel` keys (under `prefix`) to open_clip `TextTransformer` keys.

    q, k and v projections are concatenated (in that order) into `in_proj_weight/bias`. Strict:
    every key under `prefix` must be used and every open_clip tensor filled, otherwise a
    CheckpointError names the missing and unexpected keys. `embeddings.position_ids` is ignored
    (a buffer some transformers versions save). Keys outside `prefix` belong to other modules of
    the checkpoint and are not looked at.
    """
    _require_prefix(hf_sd, prefix)
    source = {k[len(prefix):]: v for k, v in hf_sd.items() if k.startswith(prefix)}
    source.pop("embeddings.position_ids", None)
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor | None:
        if name not in source:
            missing.append(prefix + name)
            return None
        used.add(name)
        return source[name]

    def put(target: str, name: str) -> None:
        tensor = take(name)
        if tensor is not None:
            out[target] = tensor

    put("token_embedding.weight", "embeddings.token_embedding.weight")
    put("positional_embedding", "embeddings.position_embedding.weight")
    put("ln_final.weight", "final_layer_norm.weight")
    put("ln_final.bias", "final_layer_norm.bias")
    for i in range(_clip_layer_count(hf_sd, prefix)):
        for hf_name, oc_name in _layer_names(i):
            put(oc_name, hf_name)
        for p in ("weight", "bias"):
            qkv = [take(f"encoder.layers.{i}.self_attn.{n}_proj.{p}") for n in ("q", "k", "v")]
            if all(t is not None for t in qkv):
                out[f"transformer.resblocks.{i}.attn.in_proj_{p}"] = torch.cat(qkv, dim=0)
    unexpected = sorted(prefix + k for k in source.keys() - used)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        raise CheckpointError(
            "The CLIP text weights do not match the SD-1.5 text-model layout (" + "; ".join(parts)
            + "). Check that the checkpoint is a complete CLIPTextModel with the expected prefix."
        )
    return out



def resolve_clip_config(hf_sd: Mapping[str, torch.Tensor], prefix: str,
                         config: ClipTextConfig | str | os.PathLike | None) -> ClipTextConfig:
    """The CLIPTextConfig that fits these weights: sizes from the tensor shapes, heads/activation/
    eps from `config` (object or JSON path). Without one only SD-1.5's width 768 is accepted, with
    SD-1.5's 12 heads, because the head count cannot be read from the weights."""
    width, layers, vocab, context = infer_clip_dims(hf_sd, prefix)
    fc1 = prefix + "encoder.layers.0.mlp.fc1.weight"
    intermediate = int(hf_sd[fc1].shape[0]) if fc1 in hf_sd else 4 * width
    if config is None:
        if width != SD15_DIMS["width"]:
            raise CheckpointError(
                f"The CLIP text weights are {width} wide, not SD-1.5's 768, and no CLIPTextConfig "
                "was given: the head count cannot be read from weights. Pass its config.json."
            )
        return ClipTextConfig(width, layers, SD15_DIMS["heads"], intermediate, vocab, context)
    if not isinstance(config, ClipTextConfig):
        config = read_clip_text_config(config)
    expected = {"hidden_size": width, "num_hidden_layers": layers, "vocab_size": vocab,
                "max_position_embeddings": context, "intermediate_size": intermediate}
    wrong = [f"{k}={getattr(config, k)} but the weights say {v}"
             for k, v in expected.items() if getattr(config, k) != v]
    if wrong:
        raise CheckpointError("The CLIP text config does not match the weights: " + "; ".join(wrong) + ".")
    return config



def clip_config_from_weights(hf_sd: Mapping[str, torch.Tensor], prefix: str = DEFAULT_HF_PREFIX,
                             config: ClipTextConfig | str | os.PathLike | None = None):
    """A `TextEncoderConfig` for kind 'clip-sd15' that fits these HF CLIPTextModel weights."""
    clip = resolve_clip_config(hf_sd, prefix, config)
    values = {"kind": "clip-sd15", "width": clip.hidden_size, "layers": clip.num_hidden_layers,
              "heads": clip.num_attention_heads, "vocab_size": clip.vocab_size,
              "context_length": clip.max_position_embeddings, "layer_norm_eps": clip.layer_norm_eps,
              "intermediate_size": clip.intermediate_size}
    return TextEncoderConfig(**values)

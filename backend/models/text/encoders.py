"""Which text encoder a model uses: by kind name, or from the `TextEncoderConfig` in its config.json."""

from __future__ import annotations

import inspect
import os

from ...errors import CheckpointError, UserError
from .base import TextEncoder
from .clip_encoder import SD15ClipTextEncoder
from .minilm import MiniLMTextEncoder

TEXT_ENCODERS = {"clip-sd15": SD15ClipTextEncoder, "minilm": MiniLMTextEncoder}


def build_text_encoder(kind: str, **cfg) -> TextEncoder:
    """The text encoder named by a model config: 'clip-sd15' or 'minilm'; `cfg` goes to its
    constructor (e.g. width/layers/heads/tokenizer_dir for CLIP, max_tokens for MiniLM)."""
    known = ", ".join(repr(k) for k in TEXT_ENCODERS)
    if kind not in TEXT_ENCODERS:
        raise UserError(f"Unknown text encoder kind {kind!r}; known kinds: {known}.")
    cls = TEXT_ENCODERS[kind]
    try:
        inspect.signature(cls).bind(**cfg)
    except TypeError as exc:
        raise UserError(f"Bad settings for the {kind!r} text encoder: {exc}.") from exc
    return cls(**cfg)


def build_text_encoder_from_config(cfg, tokenizer_dir: str | os.PathLike | None = None) -> TextEncoder:
    """The encoder a `TextEncoderConfig` describes (weights: the caller loads them for CLIP; MiniLM
    brings its own). For MiniLM, `context_length` is its fixed token count and `width` must be 384."""
    if cfg.kind == "clip-sd15":
        return build_text_encoder(
            "clip-sd15", width=cfg.width, layers=cfg.layers, heads=cfg.heads,
            vocab_size=cfg.vocab_size, context_length=cfg.context_length,
            intermediate_size=cfg.intermediate_size,
            layer_norm_eps=cfg.layer_norm_eps, tokenizer_dir=tokenizer_dir)
    if cfg.kind == "minilm":
        encoder = build_text_encoder("minilm", max_tokens=cfg.context_length)
        if encoder.width != cfg.width:
            raise CheckpointError(
                f"config.json says the text encoder is {cfg.width} wide, but MiniLM gives "
                f"{encoder.width} channels; set text.width to {encoder.width}."
            )
        return encoder
    return build_text_encoder(cfg.kind)  # raises the unknown-kind error

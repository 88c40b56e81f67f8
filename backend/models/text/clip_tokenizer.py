"""The SD-1.5 tokenizer: the slow Hugging Face CLIPTokenizer with max-length padding, rebuilt.

The official flow reads CLIP's hidden state at all 77 positions, padding included, so the pad id
(49407, not open_clip's 0) and the HF tokenizer's text cleaning both change its input; this
module reproduces them token for token.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence

import ftfy
import regex
import torch

from ...errors import CheckpointError, PromptError, UserError
from .prompts import as_prompt_list

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
        for prompt in as_prompt_list(prompts):
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

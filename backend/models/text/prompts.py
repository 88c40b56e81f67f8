"""Prompt checks shared by every text encoder: what counts as a batch, and what a user may type."""

from __future__ import annotations

from typing import Sequence

from ...errors import PromptError

EMPTY_PROMPT_MESSAGE = (
    "The prompt is empty: type what the mesh should do, e.g. 'a dragon flaps its wings'."
)


def as_prompt_list(prompts: str | Sequence[str]) -> list[str]:
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

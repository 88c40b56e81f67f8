"""The ranges an animate request must fall in, checked by every door it can come through.

The protocol checks them when it parses a request, the backend's Python API and command line
before any work, the add-on's settings by their own min / max. One place, so a value the panel
allows is never refused by the backend and a value the backend refuses never costs a model load.
"""

from __future__ import annotations

import math

from .codes import ErrorCode, SeamError

MAX_SEED = 2**31 - 1
MIN_STEPS, MAX_STEPS = 2, 1000
MIN_TOKENS, MAX_TOKENS = 1, 65536
# A clip's length after retiming: 1000 frames is 40 s at 24 fps; a longer clip is a sequence of
# takes, and every frame costs N x 12 bytes in each file it crosses.
MIN_FRAMES, MAX_FRAMES = 2, 1000
MIN_STRENGTH, MAX_STRENGTH = 0.0, 2.0  # a factor on the motion: 0 stands still, 2 doubles it
MAX_PROMPT_CHARS = 8000  # a paragraph; the text encoders read the first 32-77 tokens of it
MAX_ID_CHARS = 128
# A protocol line: a request with the longest prompt fits many times over; a bigger line is noise
# or an attack, and is refused before it is parsed.
MAX_LINE_BYTES = 64 * 1024


def _bad(message: str) -> SeamError:
    return SeamError(ErrorCode.BAD_INPUT, message)


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"{name} must be a finite number (got {value!r}).")
    return value


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be a whole number (got {value!r}).")
    return value


def check_seed(seed) -> None:
    if seed is not None and not 0 <= _whole("seed", seed) <= MAX_SEED:
        raise _bad(f"seed must be between 0 and {MAX_SEED} (got {seed}).")


def check_steps(steps) -> None:
    if steps is not None and not MIN_STEPS <= _whole("steps", steps) <= MAX_STEPS:
        raise _bad(f"steps must be between {MIN_STEPS} and {MAX_STEPS} (got {steps}); most runs "
                   "use 8 to 64.")


def check_tokens(num_traj) -> None:
    if num_traj is not None and not MIN_TOKENS <= _whole("num_traj", num_traj) <= MAX_TOKENS:
        raise _bad(f"num_traj (tokens) must be between {MIN_TOKENS} and {MAX_TOKENS} (got "
                   f"{num_traj}); leave it unset to pick it from the vertex count.")


def check_frames(frames) -> None:
    if frames is not None and not MIN_FRAMES <= _whole("frames", frames) <= MAX_FRAMES:
        raise _bad(f"frames must be between {MIN_FRAMES} and {MAX_FRAMES} (got {frames}); leave it "
                   "unset for the model's own 16.")


def check_strength(strength) -> None:
    if strength is not None and not MIN_STRENGTH <= _number("strength", strength) <= MAX_STRENGTH:
        raise _bad(f"strength must be between {MIN_STRENGTH:g} and {MAX_STRENGTH:g} (got {strength}); "
                   "1 keeps the motion as the model made it.")


def check_guidance(guidance) -> None:
    if guidance is not None and not 0 <= _number("guidance", guidance) <= 100:
        raise _bad(f"guidance must be between 0 and 100 (got {guidance}); the models use 1.5-3.")


def check_prompt_text(prompt) -> None:
    if not isinstance(prompt, str):
        return  # the prompt checks of each side say what a prompt must be
    if len(prompt) > MAX_PROMPT_CHARS:
        raise SeamError(ErrorCode.BAD_PROMPT, f"the prompt is {len(prompt)} characters long; at most "
                        f"{MAX_PROMPT_CHARS} are read. Say what the mesh should do in a sentence.")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes from a command line arrive as lone surrogates
        raise SeamError(ErrorCode.BAD_PROMPT, "the prompt holds bytes that are not UTF-8 text; type "
                        "it again (or set the terminal to UTF-8).") from None


def check_request_values(*, seed=None, steps=None, num_traj=None, guidance=None, prompt=None,
                         frames=None, strength=None) -> None:
    """Every range above at once (None: the model's default, always allowed)."""
    check_strength(strength)
    check_seed(seed)
    check_steps(steps)
    check_tokens(num_traj)
    check_frames(frames)
    check_guidance(guidance)
    check_prompt_text(prompt)

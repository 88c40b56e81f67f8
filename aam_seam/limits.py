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
MAX_SEGMENTS = 16   # prompts in one chain, the first included: 16 takes are 15 seconds at 16 fps
MAX_VARIATIONS = 16  # takes of one request side by side; each costs a copy of the mesh in Blender
MAX_FALLOFF = 1.0    # a mask's smooth falloff, as a share of the mesh's bounding-box diagonal
# How a clip is made to loop (the backend's loops module implements each, a test keeps them equal):
LOOP_METHODS = {
    "blend": "remove the drift between end and start and blend the velocities across the wrap",
    "crossfade": "generate one more segment and cross-fade its end into the start (twice the time)",
    "match": "generate one more segment and loop between its two most alike poses (twice the time)",
    "pingpong": "play forward then back, easing to rest at both turns: keeps a one-way motion's swing",
    "auto": "blend when that keeps the take's swing, else ping-pong",
}
# How much sampling a take gets. Each names a schedule in the backend (backend/quality.py); an
# explicit steps / solver overrides it. Chosen by measurement: see the README's solver table.
QUALITY_PRESETS = {
    "draft": "8 flow evaluations: a quick look, about 9% from the 128-evaluation reference",
    "standard": "16 flow evaluations: about 4% from the 128-evaluation reference, 7x faster",
    "reference": "the model's own schedule (the official 126 evaluations for the official weights)",
}
# Keep Shape: how each frame is pulled back towards the mesh's own edge lengths (backend/rigidity.py)
KEEP_SHAPE_MODES = {
    "off": "the frames as the model made them",
    "auto": "keep edge lengths where the motion is rigid or articulated, leave deformations alone",
    "on": "keep edge lengths on every take (grow, melt and squash lose some of their deformation)",
}
# A request without a mode leaves it to the model (its config's sampler.keep_shape): auto for the
# embedded model (chosen by measurement: its model card, Keep Shape), off for the official weights
# (their outputs as published).
MODEL_KEEP_SHAPE = "the model's own: auto for the embedded model, off for the official weights"
DEFAULT_QUALITY = "standard"
DEFAULT_LOOP = "auto"  # chosen by measurement: see the README's loop table
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


def check_then(then) -> None:
    """The prompts after the first, one per chained segment."""
    if then is None:
        return
    if not isinstance(then, (list, tuple)) or not all(isinstance(p, str) for p in then):
        raise _bad("the chained prompts (then) must be a list of texts.")
    if len(then) + 1 > MAX_SEGMENTS:
        raise _bad(f"a chain holds at most {MAX_SEGMENTS} prompts (got {len(then) + 1}); make a longer "
                   "clip from several chains, or set Length to stretch each segment.")
    for number, prompt in enumerate(then, start=2):
        if not prompt.strip():
            raise SeamError(ErrorCode.BAD_PROMPT, f"chained prompt {number} is empty; type what the mesh "
                            "should do next, or remove it from the chain.")
        check_prompt_text(prompt)


def check_repeat(repeat) -> None:
    if not 1 <= _whole("repeat", repeat) <= MAX_SEGMENTS:
        raise _bad(f"repeat must be between 1 and {MAX_SEGMENTS} (got {repeat}): how many times the "
                   "prompt and its chain play.")


def chained(prompt: str, chain, repeat: int = 1) -> list[str]:
    """The request's `then`: the prompt and its chain played `repeat` times, minus the first."""
    return ([prompt, *chain] * max(int(repeat), 1))[1:]


def check_loop(loop) -> None:
    if loop is not None and loop not in LOOP_METHODS:
        raise _bad(f"unknown loop method {loop!r}; choose {' or '.join(LOOP_METHODS)} (or none).")


def check_quality(quality) -> None:
    if quality is not None and quality not in QUALITY_PRESETS:
        raise _bad(f"unknown quality {quality!r}; choose {', '.join(QUALITY_PRESETS)}.")


def check_keep_shape(keep_shape) -> None:
    if keep_shape is not None and keep_shape not in KEEP_SHAPE_MODES:
        raise _bad(f"unknown keep shape mode {keep_shape!r}; choose {', '.join(KEEP_SHAPE_MODES)}.")


def check_variations(variations) -> None:
    if variations is not None and not 1 <= _whole("variations", variations) <= MAX_VARIATIONS:
        raise _bad(f"variations must be between 1 and {MAX_VARIATIONS} (got {variations}); each is one "
                   "more take of the same request with the next seed.")


def check_mask_falloff(falloff) -> None:
    if falloff is not None and not 0 <= _number("mask falloff", falloff) <= MAX_FALLOFF:
        raise _bad(f"mask falloff must be between 0 and {MAX_FALLOFF:g} of the mesh's size (got "
                   f"{falloff}); 0 is a hard edge, 0.1 a soft one.")


def check_mask(mask, num_vertices: int) -> None:
    """Per-vertex weights: one finite number per vertex, 0 (pinned) to 1 (moves fully)."""
    import numpy as np

    if mask is None:
        return
    weights = np.asarray(mask)
    if weights.dtype.kind not in "fiub" or weights.shape != (num_vertices,):
        raise SeamError(ErrorCode.BAD_MASK, f"the mask must hold one weight per vertex ({num_vertices}), "
                        f"got shape {weights.shape}; build it from the same mesh.")
    if weights.size and not (np.isfinite(weights).all() and weights.min() >= 0 and weights.max() <= 1):
        raise SeamError(ErrorCode.BAD_MASK, "mask weights must lie between 0 (pinned) and 1 (moves "
                        f"fully); got {float(np.nanmin(weights)):g} to {float(np.nanmax(weights)):g}.")


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
                         frames=None, strength=None, then=None, loop=None, variations=None,
                         mask_falloff=None, quality=None, keep_shape=None) -> None:
    """Every range above at once (None: the model's default, always allowed)."""
    check_quality(quality)
    check_keep_shape(keep_shape)
    check_then(then)
    check_loop(loop)
    check_variations(variations)
    check_mask_falloff(mask_falloff)
    check_strength(strength)
    check_seed(seed)
    check_steps(steps)
    check_tokens(num_traj)
    check_frames(frames)
    check_guidance(guidance)
    check_prompt_text(prompt)

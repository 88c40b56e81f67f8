"""Text + mesh -> per-vertex trajectories: the whole inference chain in one readable function.

    prepare (weld, triangulate, normalise, edges)
    -> vertex features + token choice (FPS)       -> shape latent (encoder)
    -> text states (prompt and null prompt)       -> trajectory latent (guided flow sampling)
    -> decode every vertex                        -> back to the caller's units and vertex order
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from aam_seam import limits
from aam_seam.codes import ErrorCode, SeamError
from aam_seam.stages import Stage

from . import mesh as meshprep
from .errors import UserError
from .model_folder import LoadedModel, load_model
from .models.farthest_point_sampling import sample_token_indices
from .models.text import check_prompt
from .motion import scale_motion, weak_take_warning
from .retime import retime
from .sampling import Cancelled, evaluations_per_run, sample_trajectory_latent

# progress(stage, done, total); stage: an aam_seam.stages.Stage
ProgressFn = Callable[[str, int, int], None]


@dataclass
class AnimationResult:
    frames: np.ndarray                 # (T, N, 3) float32, caller's units and vertex order
    seed: int
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    num_tokens: int = 0


def pick_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu.",
                        code=ErrorCode.NO_GPU)
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise UserError(f"there is no GPU {chosen}: this machine has {torch.cuda.device_count()}; use "
                        "--device cuda:0.", code=ErrorCode.NO_GPU)
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device {device!r} is not supported; use auto, cpu or cuda.")
    return chosen


def default_num_tokens(num_vertices: int, minimum: int = 512) -> int:
    """The official rule: at least `minimum` tokens (the model's num_traj, officially 512), and
    one per 8 vertices on big meshes."""
    return max(minimum, num_vertices // 8)


def animate(vertices, faces, prompt: str, *, model: LoadedModel | str | Path,
            seed: int | None = None, guidance: float | None = None, steps: int | None = None,
            num_traj: int | None = None, solver: str | None = None, device: str | None = None,
            frames: int | None = None, strength: float | None = None,
            precision: str = "fp32", progress: ProgressFn | None = None,
            cancel: Callable[[], bool] | None = None,
            token_indices: np.ndarray | None = None, noise: np.ndarray | None = None) -> AnimationResult:
    """Animate a mesh from a prompt. Returns frames (T, N, 3) in the input's units and order:
    the model's own T, or `frames` of them (the same motion retimed, see retime.py), its motion
    scaled by `strength` (see motion.py; a take that barely moves gets a warning).

    vertices (N, 3); faces: (M, k) array or a list of polygons (quads and n-gons are
    triangulated; no faces animates a point cloud). token_indices / noise inject the random
    choices (used by the parity tests); seed makes them reproducible otherwise.
    """
    check_prompt(prompt, None)  # cheap checks first: fail before loading anything
    try:
        limits.check_request_values(seed=seed, steps=steps, num_traj=num_traj, guidance=guidance,
                                    prompt=prompt, frames=frames, strength=strength)
    except SeamError as exc:
        raise UserError(exc.message, code=exc.code) from None
    timings: dict[str, float] = {}
    report = progress or (lambda *a: None)

    def checkpoint(stage: str, done: int = 1, total: int = 1):
        report(stage, done, total)
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled during {stage}")

    dev = pick_device(device)
    clock = time.perf_counter()
    prep = meshprep.prepare_mesh(vertices, faces)
    n = prep.normalized.shape[0]
    timings["prepare"] = time.perf_counter() - clock
    checkpoint(Stage.PREPARE)

    if not isinstance(model, LoadedModel):
        clock = time.perf_counter()
        checkpoint(Stage.LOAD, 0, 1)
        model = load_model(Path(model), dev)
        timings["load"] = time.perf_counter() - clock
    cfg = model.config
    k = int(num_traj) if num_traj else default_num_tokens(n, cfg.vae.num_traj)
    if k > max(n, cfg.vae.num_traj):
        # More tokens than points only repeats points, at quadratic cost in attention.
        raise UserError(f"num_traj {k} is more than the mesh's {n} vertices; use at most "
                        f"{max(n, cfg.vae.num_traj)}, or leave it unset.")
    guidance = cfg.sampler.guidance if guidance is None else guidance
    steps = cfg.sampler.steps if steps is None else steps
    solver = solver or cfg.sampler.solver
    if seed is None:
        seed = secrets.randbelow(limits.MAX_SEED)
    generator = torch.Generator().manual_seed(int(seed))
    warnings = check_prompt(prompt, getattr(model.text_encoder, "tokenizer", None)) + list(prep.warnings)
    if model.vocabulary is not None:
        warnings += model.vocabulary.check(prompt)

    rest = torch.from_numpy(np.ascontiguousarray(prep.normalized, dtype=np.float32))
    edges = torch.from_numpy(np.ascontiguousarray(prep.edges, dtype=np.int64)).reshape(-1, 2)

    rest, key_bias = weighted_padding(rest, cfg.compat.pad_to)

    autocast = _autocast(dev, precision)
    with torch.inference_mode(), autocast:
        clock = time.perf_counter()
        rest_d = rest.to(dev)[None]
        edges_d = edges.to(dev)
        pc0_embed = model.vae.vertex_features(rest_d, edges_d)
        if token_indices is not None:
            idx = torch.as_tensor(np.asarray(token_indices), dtype=torch.long).reshape(-1)
            if idx.numel() != k:
                raise UserError(f"token_indices has {idx.numel()} entries but num_traj is {k}.")
        else:
            space = model.vae.sampling_space(rest_d, pc0_embed)
            idx = sample_token_indices(space[0, :n].float(), n, k, generator,
                                       cfg.compat.replace_index_zero)
        frames_in = rest_d.unsqueeze(1).expand(1, cfg.vae.T, -1, -1)  # a static clip
        enc = model.vae.encode(frames_in, edges_d, idx.to(dev)[None],
                               key_bias=None if key_bias is None else key_bias.to(dev),
                               pc0_embed=pc0_embed)
        shape_latent = (enc.x0.float() - cfg.stats.f0_mean) / cfg.stats.f0_std
        timings["encode"] = time.perf_counter() - clock
        checkpoint(Stage.ENCODE)

        clock = time.perf_counter()
        text = model.text_encoder.encode([prompt, ""], device=dev).float()
        cond, uncond = text[:1], text[1:]
        timings["text"] = time.perf_counter() - clock
        checkpoint(Stage.TEXT)

        clock = time.perf_counter()
        if noise is not None:
            noise_t = torch.as_tensor(np.asarray(noise), dtype=torch.float32).reshape(1, k, -1)
        else:
            noise_t = torch.randn((1, k, 2 * cfg.vae.latent_dim), generator=generator)
        total = evaluations_per_run(steps, solver)
        sample = sample_trajectory_latent(
            model.flow, shape_latent, cond, uncond, noise_t.to(dev), cfg.stats,
            steps=steps, guidance=float(guidance), solver=solver,
            on_step=lambda done, _total: checkpoint(Stage.SAMPLE, done, total))
        timings["sample"] = time.perf_counter() - clock

        clock = time.perf_counter()
        decoded = model.vae.decode(sample.latent.to(pc0_embed.dtype), pc0_embed[:, :n], rest_d[:, :n])
        decoded = decoded[0].float().cpu().numpy()
        timings["decode"] = time.perf_counter() - clock
        checkpoint(Stage.DECODE)

    result = meshprep.restore_frames(prep, decoded)
    if not np.isfinite(result).all():
        raise UserError("the model produced non-finite positions; try another seed or fewer steps, "
                        "or use precision fp32.", code=ErrorCode.NUMERICAL)
    weak = weak_take_warning(result)  # judged on the take itself, before any strength
    if weak:
        warnings.append(weak)
    if strength is not None and strength != 1:
        result = scale_motion(result, float(strength))
    if frames is not None:
        result = retime(result, int(frames))
    return AnimationResult(result.astype(np.float32), int(seed), warnings, timings, k)


def weighted_padding(rest: torch.Tensor, pad_to: int):
    """The official zero-padding up to `pad_to` rows, at the cost of one row.

    The official script pads every mesh with zero vertices up to pad_to rows; they act as
    identical keys in the encoder attention. One zero row whose logit carries log(count) has
    exactly the same effect. rest: (N, 3) -> (rest with the row, key bias (1, 1, 1, N + 1))
    or (rest, None) when no padding applies.
    """
    n = rest.shape[0]
    n_pad = max(pad_to - n, 0)
    if not n_pad:
        return rest, None
    key_bias = torch.zeros(1, 1, 1, n + 1, device=rest.device)
    key_bias[..., -1] = math.log(n_pad)
    return torch.cat([rest, rest.new_zeros(1, 3)]), key_bias


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if device.type != "cuda":
        raise UserError(f"precision {precision} needs a CUDA GPU; use fp32 on CPU.")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise UserError(f"unknown precision '{precision}'; choose fp32, bf16 or fp16.")
    return torch.autocast("cuda", dtype=dtype)

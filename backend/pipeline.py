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
from . import masks, rigidity
from .joins import join_segments
from .loops import LOOPS
from .models.farthest_point_sampling import sample_token_indices
from .models.text import check_prompt
from .motion import scale_motion, weak_take_warning
from .quality import schedule_for
from .retime import retime, retime_loop
from .sampling import Cancelled, evaluations_per_run, sample_trajectory_latent
from .subject_reading import read_prompt

# progress(stage, done, total); stage: an aam_seam.stages.Stage
ProgressFn = Callable[[str, int, int], None]


@dataclass
class AnimationResult:
    takes: np.ndarray                  # (K, T, N, 3) float32, caller's units and vertex order
    seeds: list[int]                   # take k was made with seeds[k]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    num_tokens: int = 0
    seams: list[int] = field(default_factory=list)  # frames where chained segments meet (model rate)
    keep_shape: str = "off"            # the Keep Shape mode the takes were made with

    @property
    def frames(self) -> np.ndarray:
        """(T, N, 3): the first take."""
        return self.takes[0]

    @property
    def seed(self) -> int:
        return self.seeds[0]


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
            num_traj: int | None = None, solver: str | None = None, quality: str | None = None,
            device: str | None = None, frames: int | None = None, strength: float | None = None, then=(),
            loop: str | None = None, mask=None, mask_falloff: float | None = None,
            variations: int | None = None, keep_shape: str | None = None, precision: str = "fp32",
            progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
            token_indices: np.ndarray | None = None, noise: np.ndarray | None = None) -> AnimationResult:
    """Animate a mesh from a prompt. Returns takes (K, T, N, 3) in the input's units and order.

    One take is the model's T frames. `then` chains more prompts: each segment starts from the
    previous one's last pose and they are joined without a jump in velocity (joins.py). `loop`
    closes the clip with a method of loops.py. `frames` retimes the whole clip (retime.py),
    `strength` scales its motion and `mask` (one weight per vertex, 0 pinned) scales each
    vertex's, softened over `mask_falloff` of the diagonal (masks.py). `variations` K makes K
    takes with seeds seed, seed + 1, ... in one batched pass; take k equals a run with that seed.
    `keep_shape` pulls each frame back towards the mesh's edge lengths (rigidity.py; default: the
    model's config, sampler.keep_shape), before the clip is looped, retimed, scaled or masked.

    vertices (N, 3); faces: (M, k) array or a list of polygons (quads and n-gons are
    triangulated; no faces animates a point cloud). token_indices / noise inject the random
    choices of a single take (used by the parity tests).
    """
    check_prompt(prompt, None)  # cheap checks first: fail before loading anything
    try:
        limits.check_request_values(seed=seed, steps=steps, num_traj=num_traj, guidance=guidance,
                                    prompt=prompt, frames=frames, strength=strength,
                                    then=list(then or ()), loop=loop, variations=variations,
                                    mask_falloff=mask_falloff, quality=quality, keep_shape=keep_shape)
    except SeamError as exc:
        raise UserError(exc.message, code=exc.code) from None
    prompts = [prompt, *(then or ())]
    count = int(variations or 1)
    if (token_indices is not None or noise is not None) and (count > 1 or len(prompts) > 1 or loop):
        raise ValueError("token_indices / noise fix the random choices of one single take")
    timings: dict[str, float] = {}
    report = progress or (lambda *a: None)

    def checkpoint(stage: str, done: int = 1, total: int = 1):
        report(stage, done, total)
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled during {stage}")

    dev = pick_device(device)
    clock = time.perf_counter()
    prep = meshprep.prepare_mesh(vertices, faces)
    weights = None
    if mask is not None:
        try:
            limits.check_mask(mask, prep.num_original_vertices)
        except SeamError as exc:
            raise UserError(exc.message, code=exc.code) from None
        weights = masks.welded_weights(prep.to_original, mask, prep.num_vertices)
    timings["prepare"] = time.perf_counter() - clock
    checkpoint(Stage.PREPARE)

    if not isinstance(model, LoadedModel):
        clock = time.perf_counter()
        checkpoint(Stage.LOAD, 0, 1)
        model = load_model(Path(model), dev)
        timings["load"] = time.perf_counter() - clock
    cfg = model.config
    n = prep.num_vertices
    k = int(num_traj) if num_traj else default_num_tokens(n, cfg.vae.num_traj)
    if k > max(n, cfg.vae.num_traj):
        # More tokens than points only repeats points, at quadratic cost in attention.
        raise UserError(f"num_traj {k} is more than the mesh's {n} vertices; use at most "
                        f"{max(n, cfg.vae.num_traj)}, or leave it unset.")
    guidance = cfg.sampler.guidance if guidance is None else guidance
    schedule = schedule_for(quality, cfg.sampler, steps, solver)
    steps, solver = schedule.steps, schedule.solver
    if seed is None:
        seed = secrets.randbelow(limits.MAX_SEED)
    seeds = [(int(seed) + i) % (limits.MAX_SEED + 1) for i in range(count)]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    tokenizer = getattr(model.text_encoder, "tokenizer", None)
    readings = [read_prompt(text, cfg.text.subject_reading) for text in prompts]
    warnings = [r.note for r in readings if r.note]
    prompts = [r.prompt for r in readings]
    warnings += [w for text in prompts for w in check_prompt(text, tokenizer)] + list(prep.warnings)
    if model.vocabulary is not None:
        warnings += [w for text in prompts for w in model.vocabulary.check(text)]
    if weights is not None and mask_falloff and not len(prep.edges):
        warnings.append("the mask's falloff follows the surface, and a point cloud has none: its "
                        "edge stays hard.")

    shape_mode = keep_shape or cfg.sampler.keep_shape
    method = LOOPS[loop] if loop else None
    plan = prompts + [prompts[0]] * (method.extra_segments if method else 0)
    evaluations = evaluations_per_run(steps, solver)
    generate = _SegmentGenerator(model, prep, dev, precision, k, schedule, float(guidance),
                                 timings, checkpoint)
    poses = [prep.vertices.astype(np.float32)] * count
    segments: list[list[np.ndarray]] = [[] for _ in range(count)]
    for number, text in enumerate(plan):
        clips = generate(poses, text, generators, token_indices, noise,
                         done_before=number * evaluations, total=len(plan) * evaluations)
        for take, clip in enumerate(clips):
            segments[take].append(clip)
        poses = [clip[-1] for clip in clips]

    length = cfg.vae.T + (cfg.vae.T - 1) * (len(prompts) - 1)
    radius = float(mask_falloff or 0) * float(np.linalg.norm(np.ptp(prep.vertices, axis=0)))
    if weights is not None and radius > 0:
        weights = masks.soften(weights, prep.vertices.astype(np.float64), prep.edges, radius)
    rest = prep.vertices.astype(np.float32)
    takes, weak, seams = [], [], []
    for take in range(count):
        clip, seams = join_segments(segments[take])  # every take has its seams at the same frames
        if not np.isfinite(clip).all():
            raise UserError("the model produced non-finite positions; try another seed or fewer steps, "
                            "or use precision fp32.", code=ErrorCode.NUMERICAL)
        message = weak_take_warning(clip[:length])  # judged on the take itself, before any strength
        if message:
            weak.append((take, message))
        clip = shaped(clip, prep.edges, shape_mode, timings,
                      lambda done, total, take=take: checkpoint(Stage.SHAPE, take * total + done, count * total))
        if method is not None:
            clip = method.close(clip, length)
            clip = retime_loop(clip, int(frames)) if frames is not None else clip
        else:
            clip = retime(clip[:length], int(frames)) if frames is not None else clip[:length]
        if strength is not None and strength != 1:
            clip = scale_motion(clip, float(strength), anchor=rest)
        if weights is not None:
            clip = masks.apply_mask(clip, weights, anchor=rest)
        takes.append(np.asarray(clip, dtype=np.float32)[:, prep.to_original])
    for take, message in weak:
        warnings.append(message if count == 1 else f"take {take + 1} (seed {seeds[take]}): {message}")
    return AnimationResult(np.stack(takes), seeds, warnings, timings, k, seams=seams, keep_shape=shape_mode)


def shaped(clip: np.ndarray, edges: np.ndarray, mode: str, timings: dict, step=None) -> np.ndarray:
    """The joined clip after Keep Shape (frame 0 is the rest pose every segment started from).
    `step(done, total)` is called between iterations: progress, and the place to cancel."""
    if mode == "off" or not len(edges):
        return clip
    clock = time.perf_counter()
    clip = rigidity.keep_shape(torch.from_numpy(np.ascontiguousarray(clip, np.float32)), torch.from_numpy(edges),
                               mode, step=step).frames.numpy()
    timings["keep_shape"] = timings.get("keep_shape", 0.0) + time.perf_counter() - clock
    return clip


class _SegmentGenerator:
    """One segment for every take at once: the takes share the batch dimension of the encoder,
    the sampler and the decoder. Each take draws its token choice and its noise from its own
    generator in the order a single run would, so take k equals a one-take run with its seed."""

    def __init__(self, model: LoadedModel, prep, dev, precision, k, schedule, guidance,
                 timings, checkpoint):
        self.model, self.prep, self.dev, self.k = model, prep, dev, k
        self.schedule, self.guidance = schedule, guidance
        self.timings, self.checkpoint = timings, checkpoint
        self.autocast = _autocast(dev, precision)
        self.texts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _tick(self, name: str, clock: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - clock

    def text(self, prompt: str):
        if prompt not in self.texts:
            clock = time.perf_counter()
            with torch.inference_mode(), self.autocast:
                states = self.model.text_encoder.encode([prompt, ""], device=self.dev).float()
            self.texts[prompt] = (states[:1], states[1:])
            self._tick("text", clock)
            self.checkpoint(Stage.TEXT)
        return self.texts[prompt]

    def __call__(self, poses, prompt, generators, token_indices, noise, done_before, total):
        model, cfg, n, k = self.model, self.model.config, self.prep.num_vertices, self.k
        normalisations = [meshprep.normalize(pose) for pose in poses]
        normalised = [meshprep.apply_normalization(pose, center, denominator)
                      for pose, (center, denominator) in zip(poses, normalisations)]
        rest = torch.from_numpy(np.ascontiguousarray(np.stack(normalised), dtype=np.float32))
        rest, key_bias = weighted_padding(rest, cfg.compat.pad_to)
        rows = rest.shape[1]
        edges = torch.from_numpy(np.ascontiguousarray(self.prep.edges, dtype=np.int64)).reshape(-1, 2)
        # vertex_features reads one disjoint graph over the flattened batch rows
        edges = torch.cat([edges + take * rows for take in range(len(poses))])
        with torch.inference_mode(), self.autocast:
            clock = time.perf_counter()
            rest_d = rest.to(self.dev)
            pc0_embed = model.vae.vertex_features(rest_d, edges.to(self.dev))
            if token_indices is not None:
                idx = torch.as_tensor(np.asarray(token_indices), dtype=torch.long).reshape(1, -1)
                if idx.shape[1] != k:
                    raise UserError(f"token_indices has {idx.shape[1]} entries but num_traj is {k}.")
            else:
                space = model.vae.sampling_space(rest_d, pc0_embed)
                idx = torch.stack([sample_token_indices(space[take, :n].float(), n, k, generator,
                                                        cfg.compat.replace_index_zero)
                                   for take, generator in enumerate(generators)])
            frames_in = rest_d.unsqueeze(1).expand(-1, cfg.vae.T, -1, -1)  # a static clip
            enc = model.vae.encode(frames_in, None, idx.to(self.dev),
                                   key_bias=None if key_bias is None else key_bias.to(self.dev),
                                   pc0_embed=pc0_embed)
            shape_latent = (enc.x0.float() - cfg.stats.f0_mean) / cfg.stats.f0_std
            self._tick("encode", clock)
            self.checkpoint(Stage.ENCODE)
            cond, uncond = self.text(prompt)

            clock = time.perf_counter()
            if noise is not None:
                noise_t = torch.as_tensor(np.asarray(noise), dtype=torch.float32).reshape(1, k, -1)
            else:
                noise_t = torch.cat([torch.randn((1, k, 2 * cfg.vae.latent_dim), generator=generator)
                                     for generator in generators])
            sample = sample_trajectory_latent(
                model.flow, shape_latent, cond, uncond, noise_t.to(self.dev), cfg.stats,
                steps=self.schedule.steps, guidance=self.guidance, solver=self.schedule.solver,
                shift=self.schedule.shift, on_step=lambda done, _total: self.checkpoint(Stage.SAMPLE, done_before + done, total))
            self._tick("sample", clock)

            clock = time.perf_counter()
            clips = []
            for take, (center, denominator) in enumerate(normalisations):
                decoded = model.vae.decode(sample.latent[take:take + 1].to(pc0_embed.dtype),
                                           pc0_embed[take:take + 1, :n], rest_d[take:take + 1, :n])
                clips.append(meshprep.undo_normalization(decoded[0].float().cpu().numpy(),
                                                         center, denominator))
            self._tick("decode", clock)
            self.checkpoint(Stage.DECODE)
        return clips


def weighted_padding(rest: torch.Tensor, pad_to: int):
    """The official zero-padding up to `pad_to` rows, at the cost of one row.

    The official script pads every mesh with zero vertices up to pad_to rows; they act as
    identical keys in the encoder attention. One zero row whose logit carries log(count) has
    exactly the same effect. rest: (..., N, 3) -> (rest with the row, key bias (1, 1, 1, N + 1))
    or (rest, None) when no padding applies.
    """
    n = rest.shape[-2]
    n_pad = max(pad_to - n, 0)
    if not n_pad:
        return rest, None
    key_bias = torch.zeros(1, 1, 1, n + 1, device=rest.device)
    key_bias[..., -1] = math.log(n_pad)
    return torch.cat([rest, rest.new_zeros(*rest.shape[:-2], 1, 3)], dim=-2), key_bias


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if device.type != "cuda":
        raise UserError(f"precision {precision} needs a CUDA GPU; use fp32 on CPU.")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise UserError(f"unknown precision '{precision}'; choose fp32, bf16 or fp16.")
    return torch.autocast("cuda", dtype=dtype)

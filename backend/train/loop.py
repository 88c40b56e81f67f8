"""What every training run shares: seeds, LR schedule, clipping, logs and resumable checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class OptimConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 4e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 250
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None  # stop (and checkpoint) after this wall time
    stop_at: int | None = None        # stop (and checkpoint) at this step; run again to resume
    # Fit the schedule to this wall time: after FIT_AFTER timed steps, `steps` is replaced by the
    # count that ends the run (its whole cosine decay) about then. For a machine whose speed is
    # not known in advance; a run stopped by max_minutes instead ends with its learning rate high.
    budget_minutes: float | None = None


FIT_SKIP, FIT_AFTER = 10, 50  # steps left out of the timing (start-up, allocator), steps timed


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def is_number(value) -> bool:
    """A JSON number: int or float, but not a bool (JSON true/false would pass isinstance(int))."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_from_dict(cls, values: dict):
    """A training config dataclass from JSON values: each nested section starts from the
    config's own defaults (not the bare section class's) and the given keys replace them."""
    from ..errors import UserError

    defaults = cls()
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        current = getattr(defaults, f.name)
        if dataclasses.is_dataclass(current):
            unknown = set(values[f.name]) - {g.name for g in dataclasses.fields(current)}
            if unknown:
                raise UserError(f"unknown option(s) {sorted(unknown)} in section '{f.name}'")
            kwargs[f.name] = dataclasses.replace(current, **values[f.name])
        else:
            kwargs[f.name] = values[f.name]
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise UserError(f"unknown training option(s) {sorted(unknown)}")
    return dataclasses.replace(defaults, **kwargs)


class Trainer:
    """Runs `step_fn(step) -> dict of floats` with the schedule, logging and checkpoints.

    The checkpoint (`state.pt`) holds model, optimizer, step and RNG states, so a run that is
    stopped resumes where it left off and gives the same numbers as an uninterrupted run.
    """

    def __init__(self, out_dir: Path, model: torch.nn.Module, cfg: OptimConfig, run_config=None):
        """run_config: the whole training config dataclass, written as train_config.json."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if run_config is not None:
            (self.out_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(run_config), indent=2))
        self.model, self.cfg = model, cfg
        on_gpu = any(p.is_cuda for p in model.parameters())
        if on_gpu:
            # TF32 matrix products: training shrugs off their ~1e-3 rounding, and on a GPU they
            # are several times faster than full float32.
            torch.set_float32_matmul_precision("high")
        # fused: one kernel for the whole update instead of several per parameter (a small
        # model's GPU step is mostly kernel launches)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=(0.9, 0.99), fused=True if on_gpu else None)
        self.step = 0
        self.fitted = False
        self.log_path = self.out_dir / "log.jsonl"

    @property
    def state_path(self) -> Path:
        return self.out_dir / "state.pt"

    def resume(self, generator: torch.Generator) -> bool:
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if "fitted_steps" in state:  # the schedule this run was fitted to carries on
            self.cfg.steps = int(state["fitted_steps"])
            self.fitted = True
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["generator"])
        print(f"resumed at step {self.step} from {self.state_path}", file=sys.stderr)
        return True

    def initialise_from(self, source: Path, model_file: str | None = None) -> None:
        """Start from the weights of another run (its state.pt) with a fresh optimizer and schedule:
        a second, longer stage of training that may change the loss or the data. `source` may also
        be a model directory (config.json + safetensors, e.g. backend/default_model): its
        `model_file` weights are the start, so a studio fine-tunes a finished model on its clips."""
        from ..errors import UserError

        source = Path(source)
        if (source / "state.pt").is_file():
            state = torch.load(source / "state.pt", map_location="cpu", weights_only=True)
            weights, origin = state["model"], f"{source / 'state.pt'} (step {int(state['step'])} there)"
        elif model_file is not None and (source / "config.json").is_file() and (source / model_file).is_file():
            from ..model_folder import read_safetensors

            # half-precision shipped weights load into float32 parameters
            weights, origin = read_safetensors(source / model_file), f"{source / model_file}"
        else:
            what = "an earlier training run" + (f" or a model directory with {model_file}" if model_file else "")
            raise UserError(f"--init {source}: no state.pt there; pass the folder of {what}.")
        # A part that starts as a no-op may be missing from the starting weights (a flow gaining
        # the sentence path); anything else missing or left over means another architecture.
        optional = getattr(self.model, "zero_started", ())
        current = self.model.state_dict()
        fresh = [k for k in current if k not in weights and k.startswith(optional)]
        try:
            self.model.load_state_dict({**{k: current[k] for k in fresh}, **weights})
        except RuntimeError as exc:
            raise UserError(f"--init {source}: its weights do not fit this config ({str(exc).splitlines()[0]}); "
                            "use the same model sizes as that run.") from None
        parts = sorted({k.split(".")[0] for k in fresh})
        print(f"initialised from {origin}" + (f"; new, starting from zero: {', '.join(parts)}" if parts else ""),
              file=sys.stderr)

    def fit_schedule(self, started: float, timing_from: float) -> None:
        now = time.perf_counter()
        seconds_per_step = (now - timing_from) / FIT_AFTER
        remaining = 60 * self.cfg.budget_minutes - (now - started)
        self.cfg.steps = self.step + max(1, int(remaining / seconds_per_step))
        self.fitted = True
        print(f"schedule fitted to {self.cfg.budget_minutes:g} minutes: {self.cfg.steps} steps "
              f"at {seconds_per_step * 1000:.1f} ms per step", file=sys.stderr, flush=True)

    def save(self, generator: torch.Generator):
        # All randomness of a run flows from torch's global RNG and `generator` (no numpy RNG).
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "torch_rng": torch.get_rng_state(), "generator": generator.get_state()}
        if self.fitted:
            state["fitted_steps"] = self.cfg.steps
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def run(self, step_fn, generator: torch.Generator) -> list[dict]:
        cfg = self.cfg
        history = []
        started = time.perf_counter()
        window: list[dict] = []
        first_step, timing_from = self.step, None
        if cfg.budget_minutes is not None and not self.fitted:
            cfg.steps = 10**9  # until fitted: no decay yet, and the loop must reach the fitting step
        while self.step < cfg.steps:
            lr = lr_at(self.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.model.train()
            losses = step_fn(self.step)
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            if cfg.budget_minutes is not None and not self.fitted:
                if self.step == first_step + FIT_SKIP:
                    timing_from = time.perf_counter()
                elif self.step == first_step + FIT_SKIP + FIT_AFTER:
                    self.fit_schedule(started, timing_from)
            window.append({k: float(v.detach()) for k, v in losses.items()} | {"grad_norm": float(grad_norm)})
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                row.update(step=self.step, lr=lr, minutes=(time.perf_counter() - started) / 60)
                history.append(row)
                window = []
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items()), file=sys.stderr, flush=True)
            out_of_time = (cfg.max_minutes is not None and time.perf_counter() - started > 60 * cfg.max_minutes) \
                or (cfg.stop_at is not None and self.step >= cfg.stop_at)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or out_of_time:
                self.save(generator)
            if out_of_time:
                print(f"stopping at step {self.step} (max_minutes or stop_at); run again to resume",
                      file=sys.stderr)
                break
        return history

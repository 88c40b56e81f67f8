"""`python -m backend train stats` and `train flow`: latent statistics, then the text-to-motion model.

Every clip is encoded once by the trained VAE (shape half x0, trajectory posterior mean and
log-variance). The flow model learns the rectified-flow velocity data - noise on the trajectory
half, with the shape half clamped to the data as the sampler does at inference, conditioned on
a caption encoded by the offline MiniLM encoder (cached), dropped 10% of the time for guidance.

Optionally (`word_dropout`) a share of the captions is shown with some words left out. A flow
that sees every caption whole can key on one word or one sentence shape ("with a slow big X")
and ignore the rest; when an artist's verb is one it never saw, the words it does know ("tail",
"head", "floor") are all that is left to go on, and thinned captions teach it to use them.

With `flow.sentence_conditioning`, the flow also sees the caption's sentence embedding, and
`token_dropout` hides the tokens from a share of the samples, so that the sentence path alone
must carry the motion there and cannot be left unused beside tokens that already fit the
training wording.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import (CompatConfig, FlowConfig, LatentStats, ModelConfig, SamplerDefaults,
                      TextEncoderConfig)
from ..data.motions import FAMILY_SPECS
from ..data.subjects import (COMPOUND_NOUNS, OBJECT_NOUNS, PART_WORDS, POSSESSIVE_SHARE, draw_subject,
                             swap_subject)
from ..model_folder import ModelFolder, write_model_folder
from ..models.flow import DyMeshMMDiT
from ..vocabulary import Vocabulary, load_vocabulary
from .batching import batched_token_indices, collate
from .data import load_prepared
from .loop import OptimConfig, Trainer, config_from_dict, is_number, seed_everything
from .vae import load_trained_vae

MINILM_TOKENS = 32


COMPOUND_SUBJECTS = ("whole_body", "all")


@dataclass
class FlowTrainConfig:
    flow: FlowConfig = field(default_factory=lambda: FlowConfig(
        input_channels=32, output_channels=32, width=256, layers=6, heads=4))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, batch_size=32))
    sampler: SamplerDefaults = field(default_factory=lambda: SamplerDefaults(steps=25, guidance=3.0))
    cond_drop_prob: float = 0.1
    word_dropout: float = 0.0       # chance that a training caption is shown with words left out
    word_dropout_rate: float = 0.3  # then, each word's chance to be left out (one always stays)
    token_dropout: float = 0.0      # chance that a captioned sample shows the flow only the
                                    # sentence embedding (needs flow.sentence_conditioning)
    subject_swap: float = 0.0       # chance that a caption names its mesh with another subject
    # which families' swaps may be a noun with a part word: "whole_body" motions only, or "all"
    compound_subjects: str = "whole_body"
    # the share of those written "lion's head", not "lion head" (the captions' own "the dog's head
    # bobs" is a part motion)
    compound_possessive: float = POSSESSIVE_SHARE
    save_dtype: str = "float16"  # weights shipped in the repository: half the bytes

    @classmethod
    def from_dict(cls, values: dict) -> "FlowTrainConfig":
        cfg = config_from_dict(cls, values)
        from ..errors import UserError

        for name in ("word_dropout", "word_dropout_rate", "token_dropout", "subject_swap", "compound_possessive"):
            value = getattr(cfg, name)
            if not (is_number(value) and 0 <= value < 1):
                raise UserError(f"{name} must be a number from 0 up to (not including) 1, got {value!r}.")
        if cfg.compound_subjects not in COMPOUND_SUBJECTS:
            raise UserError(f"compound_subjects must be one of {', '.join(COMPOUND_SUBJECTS)}, "
                            f"got {cfg.compound_subjects!r}.")
        if not isinstance(cfg.flow.sentence_conditioning, bool):
            raise UserError(f"flow.sentence_conditioning must be true or false, got {cfg.flow.sentence_conditioning!r}.")
        if cfg.token_dropout and not cfg.flow.sentence_conditioning:
            raise UserError("token_dropout hides the caption's tokens behind its sentence embedding, which this "
                            "flow does not have: set \"flow\": {\"sentence_conditioning\": true} or token_dropout 0.")
        return cfg


def thin_caption(caption: str, rate: float, generator: torch.Generator) -> str:
    """The caption with each word left out with chance `rate`, keeping at least one word."""
    words = caption.split()
    if not words:
        return caption
    keep = (torch.rand(len(words), generator=generator) >= rate).tolist()
    if not any(keep):
        keep[int(torch.randint(len(words), (1,), generator=generator))] = True
    return " ".join(w for w, k in zip(words, keep) if k)


@dataclass
class EncodedSet:
    x0: torch.Tensor        # (S, K, ld)
    mean: torch.Tensor      # (S, K, ld)
    logvar: torch.Tensor    # (S, K, ld)
    captions: list[list[str]]
    families: list[str | None]
    nouns: list[str | None] = field(default_factory=list)


@torch.no_grad()
def encode_dataset(vae, samples, batch_size: int = 16, seed: int = 0) -> EncodedSet:
    """Latents of every sample, on the CPU; the VAE runs wherever its weights are."""
    generator = torch.Generator().manual_seed(seed)
    device = next(vae.parameters()).device
    parts = []
    for start in range(0, len(samples), batch_size):
        batch = collate(samples[start:start + batch_size]).to(device)
        feats = vae.vertex_features(batch.frames[:, 0], batch.edges)
        space = vae.sampling_space(batch.frames[:, 0], feats)
        tokens = batched_token_indices(space, batch.lengths, vae.config.num_traj, generator)
        enc = vae.encode(batch.frames, batch.edges, tokens, key_bias=batch.key_bias, pc0_embed=feats)
        parts.append((enc.x0.cpu(), enc.mean.cpu(), enc.logvar.cpu()))
    x0, mean, logvar = (torch.cat(p) for p in zip(*parts))
    return EncodedSet(x0, mean, logvar, [s.captions for s in samples], [s.family for s in samples],
                      [s.noun for s in samples])


def latent_stats(encoded: EncodedSet) -> LatentStats:
    return LatentStats(f0_mean=float(encoded.x0.mean()), f0_std=float(encoded.x0.std()),
                       ft_mean=float(encoded.mean.mean()), ft_std=float(encoded.mean.std()))


def compute_stats(vae_run: Path, data_dir: Path, out: Path | None = None, device: str = "auto") -> LatentStats:
    from ..pipeline import pick_device

    if out is None and not (Path(vae_run) / "vae_config.json").is_file() and (Path(vae_run) / "config.json").is_file():
        from ..errors import UserError

        # a stats.json there would override the stats the folder's flow learned with
        raise UserError(f"{vae_run} is a model folder, whose latent stats are in its config.json; "
                        "pass --out FILE to write new stats elsewhere, and --stats FILE to train with them.")
    device = pick_device(device)
    vae = load_trained_vae(vae_run).to(device)
    samples = load_prepared(data_dir, vae.config.T)
    stats = latent_stats(encode_dataset(vae, samples, batch_size=encode_batch_size(device)))
    path = Path(out) if out else Path(vae_run) / "stats.json"
    path.write_text(json.dumps(dataclasses.asdict(stats), indent=4))
    print(f"wrote {path}: {stats}", file=sys.stderr)
    return stats


def training_stats(vae_run: Path, stats_path: Path | None, encoded: EncodedSet) -> LatentStats:
    """The latent scaling a flow trains with: --stats, else the VAE run's stats.json, else a model
    directory's own (a flow continued on it must keep the scale its weights learned), else the
    statistics of these clips."""
    if stats_path is not None and not Path(stats_path).is_file():
        from ..errors import UserError

        raise UserError(f"--stats {stats_path}: no such file; write one with `python -m backend train stats`.")
    for path in (stats_path, vae_run / "stats.json"):
        if path is not None and Path(path).is_file():
            return LatentStats(**json.loads(Path(path).read_text()))
    if (vae_run / "config.json").is_file():
        return ModelConfig.load(vae_run).stats
    return latent_stats(encoded)


def encode_batch_size(device: torch.device) -> int:
    """Clips encoded at once: small on a CPU (cache-friendly), large on a GPU (few launches)."""
    return 16 if device.type == "cpu" else 128


class CaptionCache:
    """MiniLM token states of every caption, computed once (the text encoder stays frozen)."""

    def __init__(self, encoder, captions: list[str], batch: int = 64):
        """The encoder runs wherever its weights are; the cache is kept on the CPU. Captions
        outside the cache (thinned ones) are encoded when asked for, by the same encoder."""
        self.encoder = encoder
        self.index = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        unique = list(self.index)
        with torch.inference_mode():
            # float16 halves the cache (tens of thousands of captions x 32 tokens x 384 channels)
            states = [encoder.encode(unique[i:i + batch], device="cpu").to(torch.float16)
                      for i in range(0, len(unique), batch)]
        self.states = torch.cat(states)

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.index]
        if not missing:
            return self.states[[self.index[c] for c in captions]].float()
        with torch.inference_mode():
            fresh = self.encoder.encode(missing, device="cpu").float()
        row = {c: i for i, c in enumerate(missing)}
        return torch.stack([fresh[row[c]] if c in row else self.states[self.index[c]].float() for c in captions])


def flow_loss(flow: DyMeshMMDiT, x1: torch.Tensor, text: torch.Tensor, keep: torch.Tensor,
              half: int, generator=None, token_keep: torch.Tensor | None = None) -> dict:
    noise = torch.randn(x1.shape, generator=generator).to(x1.device)
    # Logit-normal times put more training where the velocity is hardest to guess (mid t).
    t = torch.sigmoid(torch.randn(x1.shape[0], generator=generator)).to(x1.device)
    xt = t[:, None, None] * x1 + (1 - t[:, None, None]) * noise
    xt[..., :half] = x1[..., :half]  # the sampler clamps the shape half to the encoder's
    v = flow(xt, t, text, keep, token_keep)
    target = x1 - noise
    loss = (v[..., half:] - target[..., half:]).square().mean()
    return {"loss": loss, "flow_mse": loss.detach()}


def train_flow(vae_run: Path, data_dir: Path, out_dir: Path, cfg: FlowTrainConfig,
               stats_path: Path | None = None, init_from: Path | None = None) -> Path:
    from ..models.text.encoders import build_text_encoder
    from ..sampling import rescale

    from ..pipeline import pick_device

    generator = seed_everything(cfg.optim.seed)
    if cfg.optim.threads:
        torch.set_num_threads(cfg.optim.threads)
    device = pick_device(cfg.optim.device)
    vae = load_trained_vae(vae_run)
    half = vae.config.latent_dim
    if cfg.flow.input_channels != 2 * half:
        cfg.flow = dataclasses.replace(cfg.flow, input_channels=2 * half, output_channels=2 * half)
    encoded = encode_dataset(vae.to(device), load_prepared(data_dir, vae.config.T), seed=cfg.optim.seed,
                             batch_size=encode_batch_size(device))
    vae.cpu()
    stats = training_stats(Path(vae_run), stats_path, encoded)
    text_encoder = build_text_encoder("minilm", max_tokens=MINILM_TOKENS).to(device)
    captions = CaptionCache(text_encoder, [c for cs in encoded.captions for c in cs],
                            batch=64 if device.type == "cpu" else 1024)
    if not cfg.word_dropout:
        text_encoder.cpu()  # thinned captions are encoded as training goes, where it runs
    print(f"cached {len(captions.index)} caption encodings", file=sys.stderr)
    flow = DyMeshMMDiT(cfg.flow, text_encoder.width).to(device)
    trainer = Trainer(out_dir, flow, cfg.optim, run_config=cfg)
    if not trainer.resume(generator) and init_from is not None:
        trainer.initialise_from(init_from, model_file="flow.safetensors")

    def step(_):
        pick = torch.randint(len(encoded.x0), (cfg.optim.batch_size,), generator=generator)
        eps = torch.randn(encoded.mean[pick].shape, generator=generator)
        xt = encoded.mean[pick] + torch.exp(0.5 * encoded.logvar[pick].clamp(-30, 20)) * eps
        x1 = rescale(torch.cat([encoded.x0[pick], xt], -1), stats)
        chosen = [encoded.captions[i][int(torch.randint(len(encoded.captions[i]), (1,), generator=generator))]
                  for i in pick.tolist()]
        if cfg.subject_swap:
            chosen = [resubject(c, i, encoded, cfg.subject_swap, generator, cfg.compound_subjects == "all",
                                cfg.compound_possessive)
                      for c, i in zip(chosen, pick.tolist())]
        if cfg.word_dropout:
            thinned = (torch.rand(len(chosen), generator=generator) < cfg.word_dropout).tolist()
            chosen = [thin_caption(c, cfg.word_dropout_rate, generator) if t else c
                      for c, t in zip(chosen, thinned)]
        keep = (torch.rand(len(chosen), generator=generator) >= cfg.cond_drop_prob).float()
        token_keep = None
        if cfg.token_dropout:
            token_keep = (torch.rand(len(chosen), generator=generator) >= cfg.token_dropout).float().to(device)
        return flow_loss(flow, x1.to(device), captions(chosen).to(device), keep.to(device), half, generator,
                         token_keep)

    trainer.run(step, generator)
    flow.cpu()
    model_dir = Path(out_dir) / "model"
    export_model(model_dir, vae, flow, stats, cfg, text_encoder.width,
                 vocabulary=training_vocabulary(encoded, init_from, cfg.subject_swap > 0))
    print(f"wrote model directory {model_dir}", file=sys.stderr)
    return model_dir


def resubject(caption: str, index: int, encoded: EncodedSet, rate: float,
              generator: torch.Generator, compounds_everywhere: bool = False,
              possessive: float = POSSESSIVE_SHARE) -> str:
    """The caption, or with chance `rate` the same caption about another subject; a noun with a
    part word only for whole-body motions unless `compounds_everywhere`."""
    noun = encoded.nouns[index] if encoded.nouns else None
    if not noun or torch.rand(1, generator=generator).item() >= rate:
        return caption
    family = FAMILY_SPECS.get(encoded.families[index] or "")
    whole_body = family is not None and not family.articulated
    return swap_subject(caption, noun, draw_subject(whole_body or compounds_everywhere, generator, possessive))


def training_vocabulary(encoded: EncodedSet, init_from: Path | None, swapped: bool = False) -> Vocabulary:
    """The words of the captions this flow learned from (with the swapped-in subjects), plus those
    its starting weights knew."""
    captions = [c for cs in encoded.captions for c in cs]
    if swapped:
        captions += [" ".join(OBJECT_NOUNS + COMPOUND_NOUNS + PART_WORDS)]
    vocab = Vocabulary.from_captions(captions, encoded.families)
    if init_from is not None:  # a model directory, or an earlier run whose model/ holds the file
        for folder in (Path(init_from), Path(init_from) / "model"):
            vocab = vocab.merged(load_vocabulary(folder))
    return vocab


def shipped_state(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict as a model folder stores it: parameters in `dtype` (half the bytes),
    buffers (the Fourier bases) exact."""
    params = {name for name, _ in module.named_parameters()}
    return {k: (v.to(dtype) if k in params else v).contiguous() for k, v in module.state_dict().items()}


def export_model(model_dir: Path, vae, flow, stats: LatentStats, cfg: FlowTrainConfig, text_width: int,
                 name: str = "animateanymesh-default", provenance: str = "trained with python -m backend train",
                 vocabulary: Vocabulary | None = None):
    dtype = getattr(torch, cfg.save_dtype)
    config = ModelConfig(name=name, vae=vae.config, flow=cfg.flow,
                         # its captions name a part in the subject only for that part's motions
                         text=TextEncoderConfig(kind="minilm", width=text_width, layers=0, heads=0,
                                                vocab_size=0, context_length=MINILM_TOKENS,
                                                subject_reading="whole_mesh"),
                         stats=stats, sampler=cfg.sampler,
                         compat=CompatConfig(pad_to=0, replace_index_zero=False), provenance=provenance)
    weights = {"vae": shipped_state(vae, dtype), "flow": shipped_state(flow, dtype)}
    write_model_folder(model_dir, ModelFolder(config, weights, vocabulary=vocabulary))
    return config

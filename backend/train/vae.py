"""`python -m backend train vae`: fit DyMeshVAE to reconstruct motion clips.

Loss: squared error of every vertex in every frame (normalised units) + a small KL term on the
trajectory half. Token choice is the same feature FPS that inference uses, run per batch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import VAEConfig
from ..models.vae import DyMeshVAE
from .batching import batched_token_indices, collate, family_sampler
from .data import load_prepared
from .loop import OptimConfig, Trainer, config_from_dict, seed_everything


@dataclass
class VAETrainConfig:
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(
        enc_depth=3, dec_depth=3, dim=96, output_dim=48, latent_dim=16, heads=4, dim_head=24,
        T=16, num_traj=128, n_layers=1, token_sampling="positions"))
    optim: OptimConfig = field(default_factory=OptimConfig)
    kl_weight: float = 1e-4
    # Vertices per sample whose trajectories are decoded and scored each step (0: all). The
    # encoder always sees every vertex; scoring a random subset makes a step several times cheaper.
    decode_vertices: int = 512
    # Weight of a second reconstruction loss that decodes the posterior *mean*. Trained on
    # posterior samples alone, the decoder learns to expect prior noise in the unused latent
    # channels and decodes the mean (what `eval` and encoding use) several times worse.
    mean_decode_weight: float = 0.0
    # Weight of a loss on edge lengths: decoded edges should have the ground truth's lengths in
    # every frame. Per-vertex decoding noise that is small next to the mesh stretches short
    # edges by several percent; this term asks the decoder for spatially coherent offsets.
    # Needs every vertex decoded, so it decodes whole meshes (decode_vertices is ignored).
    edge_weight: float = 0.0
    # Train the decoder only: the latents of every clip stay exactly as they were, so a flow
    # model trained on them remains valid (a late fine-tuning stage of the decoder).
    freeze_encoder: bool = False
    # Motion-balanced reconstruction (0: off): each clip's squared error is divided by its mean
    # squared motion plus recon_balance**2 (normalised units), the weights averaging 1 per batch.
    # Plain squared error barely notices a small motion (a shake of 2% of the mesh), so the VAE
    # learns to leave it out; this makes a clip's error count relative to how much it moves.
    recon_balance: float = 0.0
    # Draw clips of these motion families this many times as often (others: 1), e.g.
    # {"shake": 3}: a small, fast motion the VAE otherwise learns last, if at all.
    family_weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> "VAETrainConfig":
        return config_from_dict(cls, values)


ENCODER_MODULES = ("point_embed", "traj_embed", "neighbor_layers", "enc_blocks",
                   "mean_fc_x0", "mean_fc_xt", "logvar_fc_xt")


def freeze_encoder(vae: DyMeshVAE) -> None:
    """Everything that computes the latents and the decoder's vertex queries stops learning."""
    for name in ENCODER_MODULES:
        getattr(vae, name).requires_grad_(False)


def edge_length_error(recon: torch.Tensor, target: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean squared relative error of edge lengths; recon/target (B, T, N, 3), edges into B*N rows."""
    flat = lambda x: x.transpose(0, 1).reshape(x.shape[1], -1, 3)  # (T, B*N, 3)
    r, t = flat(recon), flat(target)
    length = lambda x: (x[:, edges[:, 0]] - x[:, edges[:, 1]]).norm(dim=-1)
    rest = length(t[:1]).clamp_min(1e-3)
    return ((length(r) - length(t)) / rest).square().mean()


def motion_balance_weights(batch, floor: float) -> torch.Tensor:
    """(B,) weights 1 / (mean squared motion + floor**2), scaled to average 1."""
    moved = (batch.frames - batch.frames[:, :1]).square().sum(-1)  # (B, T, N)
    real = batch.mask[:, None].float()
    motion = (moved * real).sum((1, 2)) / (real.sum((1, 2)) * moved.shape[1])
    weight = 1.0 / (motion + floor ** 2)
    return weight / weight.mean()


def vae_loss(vae: DyMeshVAE, batch, k: int, kl_weight: float, generator=None, decode_vertices: int = 0,
             mean_decode_weight: float = 0.0, edge_weight: float = 0.0, recon_balance: float = 0.0) -> dict:
    feats = vae.vertex_features(batch.frames[:, 0], batch.edges)
    space = vae.sampling_space(batch.frames[:, 0], feats)
    tokens = batched_token_indices(space.detach(), batch.lengths, k, generator)
    enc = vae.encode(batch.frames, batch.edges, tokens, key_bias=batch.key_bias, pc0_embed=feats)
    if decode_vertices and not edge_weight:
        # Score a random subset of each sample's real vertices (drawn with replacement).
        u = torch.rand(batch.lengths.shape[0], decode_vertices, generator=generator).to(feats.device)
        rows = (u * batch.lengths[:, None]).long()
        pick = lambda x: torch.gather(x, 1, rows[..., None].expand(-1, -1, x.shape[-1]))
        target = torch.gather(batch.frames, 2, rows[:, None, :, None].expand(-1, batch.frames.shape[1], -1, 3))
        queries, rest, weight = pick(feats), pick(batch.frames[:, 0]), None
    else:
        queries, rest, target, weight = feats, batch.frames[:, 0], batch.frames, batch.mask[:, None].float()

    clip_weight = motion_balance_weights(batch, recon_balance) if recon_balance else None

    def score(latent, factor: float, suffix: str):
        recon = vae.decode(latent, queries, rest)
        err = (recon - target).square().sum(-1)  # (B, T, n)
        recon_loss = err.mean() if weight is None else (err * weight).sum() / (weight.sum() * err.shape[1])
        fit = recon_loss
        if clip_weight is not None:
            per_clip = err.mean((1, 2)) if weight is None else \
                (err * weight).sum((1, 2)) / (weight.sum((1, 2)) * err.shape[1])
            fit = (clip_weight * per_clip).mean()
        out["loss"] = out["loss"] + factor * fit
        out["recon" + suffix] = recon_loss.detach()  # the plain error, comparable across runs
        if edge_weight:  # whole meshes were decoded, so the edge list indexes `recon`
            edge = edge_length_error(recon, target, batch.edges)
            out["loss"] = out["loss"] + factor * edge_weight * edge
            out["edge" + suffix] = edge.detach()

    kl = enc.kl().mean()
    out = {"loss": kl_weight * kl, "kl": kl.detach()}
    score(enc.sample(generator), 1.0, "")
    if mean_decode_weight:
        score(enc.mode(), mean_decode_weight, "_mean")
    return out


def train_vae(data_dir: Path, out_dir: Path, cfg: VAETrainConfig, init_from: Path | None = None) -> Path:
    generator = seed_everything(cfg.optim.seed)
    if cfg.optim.threads:
        torch.set_num_threads(cfg.optim.threads)
    from ..pipeline import pick_device

    device = pick_device(cfg.optim.device)
    samples = load_prepared(data_dir, cfg.vae.T)
    vae = DyMeshVAE(cfg.vae).to(device)
    trainer = Trainer(out_dir, vae, cfg.optim, run_config=cfg)
    if not trainer.resume(generator) and init_from is not None:
        trainer.initialise_from(init_from, model_file="vae.safetensors")
    if cfg.freeze_encoder:
        freeze_encoder(vae)
    weighted = family_sampler([s.family for s in samples], cfg.family_weights)

    def step(_):
        if weighted:
            pick = weighted(cfg.optim.batch_size, generator)
        else:
            pick = torch.randint(len(samples), (cfg.optim.batch_size,), generator=generator)
        batch = collate([samples[i] for i in pick]).to(device)
        return vae_loss(vae, batch, cfg.vae.num_traj, cfg.kl_weight, generator, cfg.decode_vertices,
                        cfg.mean_decode_weight, cfg.edge_weight, cfg.recon_balance)

    trainer.run(step, generator)
    save_vae(out_dir, vae.cpu())
    return out_dir


def save_vae(out_dir: Path, vae: DyMeshVAE):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in vae.state_dict().items()}, str(Path(out_dir) / "vae.safetensors"))
    (Path(out_dir) / "vae_config.json").write_text(json.dumps(dataclasses.asdict(vae.config), indent=2))


def load_trained_vae(run_dir: Path) -> DyMeshVAE:
    """A finished VAE run's VAE, or a model directory's (config.json + vae.safetensors), so a
    flow can be trained on a shipped model's latents with its VAE held fixed."""
    from ..model_folder import check_state_dict, read_safetensors
    from ..config import ModelConfig

    run_dir = Path(run_dir)
    config_path = run_dir / "vae_config.json"
    if config_path.is_file():
        config = VAEConfig(**json.loads(config_path.read_text()))
    elif (run_dir / "config.json").is_file() and (run_dir / "vae.safetensors").is_file():
        config = ModelConfig.load(run_dir).vae
    else:
        from ..errors import UserError

        raise UserError(f"{run_dir} holds no finished VAE run (vae_config.json missing) and is no model "
                        "directory; train one with `python -m backend train vae`, or pass a model folder.")
    vae = DyMeshVAE(config)
    state = read_safetensors(run_dir / "vae.safetensors")
    check_state_dict(vae, state, str(run_dir / "vae.safetensors"))
    vae.load_state_dict(state)
    return vae.eval()

"""DyMeshVAE: a mesh animation <-> K shape tokens + K trajectory tokens.

Module names and state-dict keys follow the official implementation, so its checkpoints load
as they are. Reading order follows the method:

encode
  1. point embedding of frame-0 positions (Fourier features) and trajectory embedding of the
     per-frame offsets from frame 0 (Fourier features of the flattened offsets);
  2. neighbour attention over mesh edges, added to the point embedding (`pc0_embed`);
  3. K vertices chosen by farthest point sampling on `pc0_embed` become the token queries;
  4. encoder blocks: the tokens cross-attend to every vertex, one set of attention weights
     carrying two value streams (shape and trajectory), then a GEGLU feed-forward per stream;
  5. KL bottleneck: shape half deterministic (x0), trajectory half Gaussian (xt).
decode
  6. latent halves projected back to `dim`; decoder blocks of self-attention where the shape
     stream sets the weights for both streams;
  7. every vertex queries the tokens (keys from the shape stream, values from the trajectory
     stream) and predicts T offsets, added to its frame-0 position.

Vertices are handled as one flat set of rows (batch folded in) with an edge list, so nothing
of size N x N exists; see `attention.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VAEConfig
from .attention import dense_attention, neighbour_attention


# ----------------------------------------------------------------------------- embeddings

class PointEmbed(nn.Module):
    """xyz -> Linear([sin(p B), cos(p B), p]) with B block-diagonal in pi * 2^k, k < 8."""

    def __init__(self, dim: int, n_freqs: int = 8):
        super().__init__()
        freqs = (2.0 ** torch.arange(n_freqs)) * math.pi
        basis = torch.zeros(3, 3 * n_freqs)
        for axis in range(3):
            basis[axis, axis * n_freqs:(axis + 1) * n_freqs] = freqs
        self.register_buffer("basis", basis)
        self.mlp = nn.Linear(6 * n_freqs + 3, dim)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        proj = p @ self.basis
        return self.mlp(torch.cat([proj.sin(), proj.cos(), p], dim=-1))


class TrajEmbed(nn.Module):
    """Offsets (.., T*3, frame-major) -> Linear([x, sin(pi f x), cos(pi f x)]), f = 2^0..2^9."""

    def __init__(self, dim: int, in_channels: int, n_freqs: int = 10):
        super().__init__()
        self.register_buffer("freq_bands", (2.0 ** torch.arange(n_freqs)).unsqueeze(1))
        self.mlp = nn.Linear(in_channels * (2 * n_freqs + 1), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (.., C) -> (.., F, C) -> (.., F*C): frequency varies slowest, as in the official order.
        scaled = (math.pi * self.freq_bands * x.unsqueeze(-2)).flatten(-2)
        return self.mlp(torch.cat([x, scaled.sin(), scaled.cos()], dim=-1))


# ----------------------------------------------------------------------------- building blocks

class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """One GEGLU MLP per stream (shape stream `ffn1`, trajectory stream `ffn2`)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.ffn1 = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))
        self.ffn2 = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))


class FeedForwardBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim)

    def forward(self, x0: torch.Tensor, xt: torch.Tensor):
        return x0 + self.ffn.ffn1(self.norm1(x0)), xt + self.ffn.ffn2(self.norm2(xt))


class Attention(nn.Module):
    """Plain projections of an attention layer; the pre-norm wrapper decides how they are used."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)


class NeighbourAttention(nn.Module):
    """Single-head attention of each vertex over its mesh neighbours (never itself)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.fn = Attention(dim, dim, heads=1, dim_head=2 * dim)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        q = self.fn.to_q(self.norm_q(x))
        k = self.fn.to_k(self.norm_k(x))
        v = self.fn.to_v(self.norm_v(x))
        out = neighbour_attention(q, k, v, edges, scale=self.fn.dim_head ** -0.5)
        return self.fn.to_out(out)


class DecoderCrossAttention(nn.Module):
    """Vertices query the tokens: keys from the shape stream, values from the trajectory stream."""

    def __init__(self, query_dim: int, dim: int):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(query_dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.fn = Attention(query_dim, dim, heads=1, dim_head=query_dim)

    def forward(self, queries: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        q = self.fn.to_q(self.norm_q(queries)).unsqueeze(1)
        k = self.fn.to_k(self.norm_k(x0)).unsqueeze(1)
        v = self.fn.to_v(self.norm_v(xt)).unsqueeze(1)
        out = dense_attention(q, k, v, scale=self.fn.dim_head ** -0.5).squeeze(1)
        return self.fn.to_out(out)


class SyncAttentionProjections(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v1 = nn.Linear(dim, inner, bias=False)
        self.to_v2 = nn.Linear(dim, inner, bias=False)
        self.to_out1 = nn.Linear(inner, dim)
        self.to_out2 = nn.Linear(inner, dim)


class SyncAttention(nn.Module):
    """Attention whose weights come from the shape stream and carry both streams' values.

    Sharing the weights keeps each trajectory token tied to the same vertices as its shape token.
    Encoder: tokens (query) attend to all vertices (context). Decoder: tokens attend to tokens.
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.norm_q, self.norm_k = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_v1, self.norm_v2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SyncAttentionProjections(dim, heads, dim_head)

    def forward(self, q0, k0, v0, vt, key_bias=None):
        """q0: (B, Lq, dim) shape queries; k0, v0: shape context; vt: trajectory context."""
        a = self.attn
        h, d = a.heads, a.dim_head
        split = lambda x: x.unflatten(-1, (h, d)).transpose(1, 2)  # (B, L, h*d) -> (B, h, L, d)
        q = split(a.to_q(self.norm_q(q0)))
        k = split(a.to_k(self.norm_k(k0)))
        v = torch.cat([split(a.to_v1(self.norm_v1(v0))), split(a.to_v2(self.norm_v2(vt)))], dim=-1)
        out = dense_attention(q, k, v, scale=d ** -0.5, key_bias=key_bias)
        merge = lambda x: x.transpose(1, 2).flatten(-2)
        return a.to_out1(merge(out[..., :d])), a.to_out2(merge(out[..., d:]))


class SyncBlock(nn.ModuleList):
    """`blocks.i.0` synchronous attention, `blocks.i.1` per-stream feed-forward (official keys)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__([SyncAttention(dim, heads, dim_head), FeedForwardBlock(dim)])


# ----------------------------------------------------------------------------- the model

@dataclass
class Encoded:
    x0: torch.Tensor          # (B, K, latent) shape latent
    mean: torch.Tensor        # (B, K, latent) trajectory posterior mean
    logvar: torch.Tensor      # (B, K, latent) raw (unclamped) log-variance
    pc0_embed: torch.Tensor   # (B, N, dim) per-vertex features: the decoder's queries

    def sample(self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None):
        """Latent [x0, xt] with xt drawn from the posterior (or `eps` injected)."""
        std = torch.exp(0.5 * self.logvar.clamp(-30.0, 20.0))
        if eps is None:
            eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        return torch.cat([self.x0, self.mean + std * eps], dim=-1)

    def mode(self) -> torch.Tensor:
        return torch.cat([self.x0, self.mean], dim=-1)

    def kl(self):
        logvar = self.logvar.clamp(-30.0, 20.0)
        return 0.5 * torch.mean(self.mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=(1, 2))


class DyMeshVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        dim, c = config.dim, config
        self.point_embed = PointEmbed(dim)
        self.traj_embed = TrajEmbed(dim, c.output_dim)
        self.neighbor_layers = nn.ModuleList([NeighbourAttention(dim) for _ in range(c.n_layers)])
        # Encoder cross-attention is single-head with head size `dim`.
        self.enc_blocks = nn.ModuleList([SyncBlock(dim, 1, dim) for _ in range(c.enc_depth)])
        self.mean_fc_x0 = nn.Linear(dim, c.latent_dim)
        self.mean_fc_xt = nn.Linear(dim, c.latent_dim)
        self.logvar_fc_xt = nn.Linear(dim, c.latent_dim)
        self.proj_x0 = nn.Linear(c.latent_dim, dim)
        self.proj_xt = nn.Linear(c.latent_dim, dim)
        self.dec_blocks = nn.ModuleList([SyncBlock(dim, c.heads, c.dim_head) for _ in range(c.dec_depth)])
        self.fc_query = nn.Linear(dim, 2 * dim)
        self.decoder_final_ca = DecoderCrossAttention(2 * dim, dim)
        self.to_outputs = nn.Linear(2 * dim, c.output_dim)

    # ---- encode

    def vertex_features(self, rest: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Frame-0 positions (B, N, 3) -> post-neighbour features `pc0_embed` (B, N, dim).

        `edges` index the flattened B*N rows, so a batch of meshes is one disjoint graph.
        """
        b, n, _ = rest.shape
        x = self.point_embed(rest).reshape(b * n, -1)
        for layer in self.neighbor_layers:
            x = x + layer(x, edges)
        return x.reshape(b, n, -1)

    def sampling_space(self, rest: torch.Tensor, pc0_embed: torch.Tensor) -> torch.Tensor:
        """What farthest point sampling runs on to pick the token vertices (see VAEConfig)."""
        if self.config.token_sampling == "positions":
            return rest
        if self.config.token_sampling == "features":
            return pc0_embed
        raise ValueError(f"unknown token_sampling '{self.config.token_sampling}' (features, positions)")

    def trajectory_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, N, 3) -> per-vertex trajectory embedding (B, N, dim)."""
        offsets = (frames - frames[:, :1]).permute(0, 2, 1, 3).flatten(2)  # channel 3t + c
        return self.traj_embed(offsets)

    def encode(self, frames: torch.Tensor, edges: torch.Tensor, token_idx: torch.Tensor,
               key_bias: torch.Tensor | None = None, pc0_embed: torch.Tensor | None = None) -> Encoded:
        """frames (B, T, N, 3) normalised; token_idx (B, K) rows chosen as tokens.

        key_bias (B, 1, 1, N) or None: added to the encoder attention logits per vertex; the
        pipeline uses it to let one zero row stand for the official zero-padding.
        """
        if pc0_embed is None:
            pc0_embed = self.vertex_features(frames[:, 0], edges)
        traj = self.trajectory_features(frames)
        gather = lambda x: torch.gather(x, 1, token_idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x0, xt = gather(pc0_embed), gather(traj)
        for attn, ffn in self.enc_blocks:
            d0, dt = attn(x0, pc0_embed, pc0_embed, traj, key_bias=key_bias)
            x0, xt = ffn(x0 + d0, xt + dt)
        return Encoded(self.mean_fc_x0(x0), self.mean_fc_xt(xt), self.logvar_fc_xt(xt), pc0_embed)

    # ---- decode

    def decode(self, latent: torch.Tensor, pc0_embed: torch.Tensor, rest: torch.Tensor,
               vertex_block: int = 65536) -> torch.Tensor:
        """latent (B, K, 2*latent) + vertex features (B, N, dim) + frame 0 (B, N, 3) -> (B, T, N, 3).

        The per-vertex read-out runs over blocks of vertices so memory stays bounded on big meshes.
        """
        half = self.config.latent_dim
        x0, xt = self.proj_x0(latent[..., :half]), self.proj_xt(latent[..., half:])
        for attn, ffn in self.dec_blocks:
            d0, dt = attn(x0, x0, x0, xt)
            x0, xt = ffn(x0 + d0, xt + dt)
        b, n, _ = pc0_embed.shape
        frames = rest.new_empty(b, self.config.T, n, 3)
        for s in range(0, n, vertex_block):
            feats = self.decoder_final_ca(self.fc_query(pc0_embed[:, s:s + vertex_block]), x0, xt)
            offsets = self.to_outputs(feats)  # (B, n_block, 3T), channel 3t + c
            offsets = offsets.unflatten(-1, (self.config.T, 3)).permute(0, 2, 1, 3)
            # Every frame, frame 0 included, is frame-0 position + predicted offset.
            frames[:, :, s:s + vertex_block] = rest[:, s:s + vertex_block].unsqueeze(1) + offsets
        return frames

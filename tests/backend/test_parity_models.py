"""The VAE, the flow model and the sampler reproduce the official implementation's numbers."""

import json
import math

import pytest
import torch

from backend.config import FlowConfig, LatentStats, VAEConfig
from backend.errors import CheckpointError
from backend.model_folder import check_state_dict
from backend.models.flow import DyMeshMMDiT
from backend.models.farthest_point_sampling import farthest_point_sampling, fill_token_indices
from backend.models.vae import DyMeshVAE
from backend.official_import import read_official_state_dict
from backend.pipeline import weighted_padding
from backend.sampling import rescale, sample_trajectory_latent, time_grid, unscale
from dense_reference import dense_reference

ATOL = 1e-5
VAE_CASES = ["vae_case_anim.safetensors", "vae_case_static.safetensors", "vae_case_overk.safetensors"]


def close(a, b, atol=ATOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a.float() - b.float()).abs().max().item()
    assert err <= atol + ATOL * b.abs().max().item(), err


@pytest.fixture(scope="module")
def training_config(fixtures_dir):
    return json.loads((fixtures_dir / "training_config.json").read_text())


@pytest.fixture(scope="module")
def vae(fixtures_dir, training_config):
    torch.set_num_threads(1)
    model = DyMeshVAE(VAEConfig(**training_config["vae_config"])).eval()
    state = read_official_state_dict(fixtures_dir / "vae.pth")  # module.-prefixed, wrapped
    check_state_dict(model, state, "vae.pth")
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def flow(fixtures_dir, training_config):
    cfg = {k: v for k, v in training_config["rf_config"].items() if k in FlowConfig.__dataclass_fields__}
    model = DyMeshMMDiT(FlowConfig(**cfg), 768).eval()
    state = read_official_state_dict(fixtures_dir / "rf.pth")
    model.load_state_dict(state, strict=True)
    return model


def test_official_pth_weights_equal_safetensors(vae, flow, load_fixture):
    for model, name in ((vae, "vae.safetensors"), (flow, "rf.safetensors")):
        ref = load_fixture(name)
        ours = model.state_dict()
        assert set(ours) == set(ref)
        for key in ref:
            assert torch.equal(ours[key], ref[key]), key


@pytest.mark.parametrize("case", VAE_CASES)
def test_vae_encode_decode_matches_official(vae, load_fixture, case):
    c = load_fixture(case)
    with torch.no_grad():
        enc = vae.encode(c["pc"], c["adjacency_edges"], c["fps_idx"])
        close(vae.point_embed(c["pc"][:, 0]), c["enc_point_embed"])
        close(vae.trajectory_features(c["pc"]), c["enc_traj_embed"])
        close(enc.pc0_embed, c["pc0_embed_ori"])
        close(enc.x0, c["x0"])
        close(enc.mean, c["xt_mean"])
        close(enc.logvar, c["xt_logvar"])
        close(enc.kl(), c["kl"])
        latent = enc.sample(eps=c["xt_eps"])
        close(latent, c["latent_sampled"])
        close(vae.decode(enc.mode(), enc.pc0_embed, c["queries"]), c["recon_det"])
        close(vae.decode(latent, enc.pc0_embed, c["queries"]), c["recon_sampled"])


def test_vertices_without_neighbours_get_exactly_the_output_bias(vae, load_fixture):
    c = load_fixture("vae_case_anim.safetensors")
    with torch.no_grad():
        residual = vae.vertex_features(c["queries"], c["adjacency_edges"]) - vae.point_embed(c["queries"])
    bias = vae.neighbor_layers[0].fn.to_out.bias
    isolated = [162] + list(range(205, 256))
    assert not torch.isnan(residual).any()
    close(residual[0, isolated], bias.expand(len(isolated), -1), atol=1e-6)
    close(residual, c["enc_neighbor_residual"])


@pytest.mark.parametrize("case", VAE_CASES)
def test_farthest_point_sampling_matches_reference_kernel(vae, load_fixture, case):
    c = load_fixture(case)
    n, k = int(c["valid_length"][0]), c["fps_idx"].shape[1]
    raw = farthest_point_sampling(c["pc0_embed_ori"][0, :n], k)
    assert torch.equal(raw, c["fps_idx_raw"][0])
    filled = fill_token_indices(raw, n, c["fps_rand_for_replace"][0])
    assert torch.equal(filled, c["fps_idx"][0])


def test_fps_is_deterministic_and_seeded():
    from backend.models.farthest_point_sampling import sample_token_indices

    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(3))
    a = sample_token_indices(x, 300, 64, torch.Generator().manual_seed(7))
    b = sample_token_indices(x, 300, 64, torch.Generator().manual_seed(7))
    c = sample_token_indices(x, 300, 64, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.min()) >= 0 and int(a.max()) < 300


@pytest.mark.parametrize("case", VAE_CASES)
def test_one_weighted_zero_row_reproduces_official_zero_padding(vae, load_fixture, case):
    """205 vertices + one zero row whose logit carries log(51) == the official 256 padded rows."""
    c = load_fixture(case)
    n = int(c["valid_length"][0])
    rest, bias = weighted_padding(c["pc"][0, 0, :n], 256)  # what the pipeline does
    assert rest.shape == (n + 1, 3) and bias[..., -1].item() == pytest.approx(math.log(256 - n))
    pc = torch.cat([c["pc"][:, :, :n], torch.zeros(1, 16, 1, 3)], dim=2)
    with torch.no_grad():
        enc = vae.encode(pc, c["adjacency_edges"], c["fps_idx"], key_bias=bias)
    close(enc.x0, c["x0"])
    close(enc.mean, c["xt_mean"])


def test_sparse_and_dense_reference_paths_agree(vae, load_fixture):
    c = load_fixture("vae_case_anim.safetensors")
    with torch.no_grad():
        sparse = vae.encode(c["pc"], c["adjacency_edges"], c["fps_idx"])
        sparse_out = vae.decode(sparse.mode(), sparse.pc0_embed, c["queries"])
        with dense_reference():
            dense = vae.encode(c["pc"], c["adjacency_edges"], c["fps_idx"])
            dense_out = vae.decode(dense.mode(), dense.pc0_embed, c["queries"])
    close(sparse.pc0_embed, dense.pc0_embed, atol=1e-6)
    close(sparse_out, dense_out, atol=1e-6)
    close(dense.x0, c["x0"])


def test_blocked_attention_equals_unblocked(monkeypatch, vae, load_fixture):
    from backend.models import attention

    c = load_fixture("vae_case_anim.safetensors")
    with torch.no_grad():
        whole = vae.encode(c["pc"], c["adjacency_edges"], c["fps_idx"])
        monkeypatch.setattr(attention, "SCORE_BLOCK_ELEMENTS", 300)   # a few queries per block
        monkeypatch.setattr(attention, "EDGE_BLOCK", 97)
        blocked = vae.encode(c["pc"], c["adjacency_edges"], c["fps_idx"])
        out = vae.decode(blocked.mode(), blocked.pc0_embed, c["queries"], vertex_block=37)
    close(blocked.x0, whole.x0, atol=1e-6)
    close(out, c["recon_det"])


def test_flow_model_matches_official_at_each_t(flow, load_fixture):
    c = load_fixture("rf_case.safetensors")
    text = torch.stack([c["text_emb_real"], c["text_emb_null"]])[c["text_emb_index"]]
    with torch.no_grad():
        out = flow(c["x"], c["t"], text, (~c["text_is_null"]).float())
    close(out, c["out"])


def test_null_prompt_ignores_its_embedding(flow, load_fixture):
    c = load_fixture("rf_case.safetensors")
    x, t = c["x"][:1], c["t"][:1]
    with torch.no_grad():
        a = flow(x, t, c["text_emb_null"][None], torch.zeros(1))
        b = flow(x, t, torch.randn(1, 77, 768), torch.zeros(1))
    assert torch.equal(a, b)


def test_sampler_reproduces_official_trajectory(flow, load_fixture, fixtures_dir):
    e, c = load_fixture("e2e.safetensors"), load_fixture("rf_case.safetensors")
    stats = LatentStats(**json.loads((fixtures_dir / "stats.json").read_text()))
    assert torch.equal(time_grid(8), e["time_grid"])
    close(rescale(e["x_start_raw"], stats), e["x_start_scaled"])
    with torch.no_grad():
        result = sample_trajectory_latent(flow, e["f0"], c["text_emb_real"][None], c["text_emb_null"][None],
                                          e["noise"], stats, steps=8, guidance=3.0)
    close(result.latent_scaled, e["sample_scaled"])
    close(result.latent, e["sample_unscaled"])
    close(unscale(e["sample_scaled"], stats), e["sample_unscaled"])


def test_e2e_decode_matches_official(vae, load_fixture):
    e = load_fixture("e2e.safetensors")
    static = load_fixture("vae_case_static.safetensors")
    with torch.no_grad():
        pc0 = vae.vertex_features(e["pc"][:, 0], static["adjacency_edges"])
        out = vae.decode(e["sample_unscaled"], pc0, e["pc"][:, 0])
    close(out, e["outputs_normalized"])


def test_guided_velocity_matches_recorded_evaluations(flow, load_fixture):
    from backend.sampling import guided_velocity

    e, c = load_fixture("e2e.safetensors"), load_fixture("rf_case.safetensors")
    cond, uncond = c["text_emb_real"][None], c["text_emb_null"][None]
    velocity = guided_velocity(flow, e["f0"], cond, uncond, 3.0)
    with torch.no_grad():
        for i in (0, 7, 13):
            close(velocity(e["eval_x"][i, :1], e["eval_t"][i]), e["eval_flow_cfg"][i])
        # guidance 1 skips the null pass: the result must equal the conditional output alone
        out = flow(e["eval_x"][0], e["eval_t"][:1].expand(2), torch.cat([cond, uncond]), torch.tensor([1.0, 0.0]))
        v1 = guided_velocity(flow, e["f0"], cond, uncond, 1.0)(e["eval_x"][0, :1], e["eval_t"][0])
    close(v1, out[:1], atol=1e-6)


def test_euler_solver_keeps_the_shape_half(flow, load_fixture):
    e, c = load_fixture("e2e.safetensors"), load_fixture("rf_case.safetensors")
    with torch.no_grad():
        euler = sample_trajectory_latent(flow, e["f0"], c["text_emb_real"][None], c["text_emb_null"][None],
                                         e["noise"], LatentStats(), steps=5, guidance=3.0, solver="euler")
    assert torch.equal(euler.latent_scaled[..., :16], e["f0"])
    assert not torch.allclose(euler.latent_scaled, e["sample_scaled"], atol=1e-3)


def test_checkpoint_reader_refuses_bad_files(tmp_path, fixtures_dir):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes((fixtures_dir / "vae.pth").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_official_state_dict(truncated)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "opt": Evil()}, evil)
    with pytest.raises(CheckpointError, match="only tensor-only"):
        read_official_state_dict(evil)


def test_state_dict_check_names_every_bad_key(vae, fixtures_dir):
    state = read_official_state_dict(fixtures_dir / "vae.pth")
    state.pop("to_outputs.bias")
    state["extra.weight"] = torch.zeros(1)
    state["fc_query.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as err:
        check_state_dict(vae, state, "vae.pth")
    msg = str(err.value)
    assert "to_outputs.bias" in msg and "extra.weight" in msg and "fc_query.weight" in msg


@pytest.mark.parametrize("grad", [False, True])
def test_neighbour_attention_matches_the_dense_mask_with_and_without_autograd(grad):
    """Inference takes the sparse-product path, training the gathered one: both are the masked
    softmax, for unsorted edges, repeated edges and a vertex with no neighbour."""
    from backend.models import attention as att
    from dense_reference import dense_neighbour_attention

    g = torch.Generator().manual_seed(0)
    n, d = 300, 16
    q, k, v = (torch.randn(n, d, generator=g) for _ in range(3))
    edges = torch.randint(0, n - 1, (2000, 2), generator=g)   # row n-1 receives nothing
    edges = torch.cat([edges, edges[:50]])                     # repeated edges count twice
    mask = torch.zeros(n, n)
    mask.index_put_((edges[:, 0], edges[:, 1]), torch.ones(len(edges)), accumulate=True)
    if grad:
        q.requires_grad_(True)
    with torch.set_grad_enabled(grad):
        ours = att.neighbour_attention(q, k, v, edges, scale=0.25)
    # the dense reference with multiplicities: a repeated edge is a logit bias of log(count)
    scores = (q @ k.T) * 0.25 + torch.log(mask)
    reference = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0) @ v
    torch.testing.assert_close(ours, reference, atol=2e-6, rtol=1e-5)
    assert torch.all(ours[n - 1] == 0)
    assert ours.requires_grad == grad
    if not grad:
        unique = torch.unique(edges[:-50], dim=0)
        torch.testing.assert_close(att.neighbour_attention(q, k, v, unique, 0.25),
                                   dense_neighbour_attention(q, k, v, unique, 0.25), atol=2e-6, rtol=1e-5)

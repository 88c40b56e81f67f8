"""The command line and the Python API: results in the caller's units and order, clear errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from backend.errors import CheckpointError, MeshError, ModelNotFoundError, PromptError, UserError
from backend.mesh_io import save_obj
from backend.model_folder import load_model
from backend.pipeline import animate

FAST = dict(steps=3, num_traj=32)


def quad_grid(n=6, scale=10.0, offset=(100.0, -5.0, 3.0)):
    """An n x n quad grid in large units, far from the origin, with one duplicated seam vertex."""
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    verts = np.stack([xs, ys, np.sin(xs) * 0.3], -1).reshape(-1, 3) * scale + offset
    quads = [[i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j]
             for i in range(n - 1) for j in range(n - 1)]
    verts = np.concatenate([verts, verts[:1]])  # vertex 36 duplicates vertex 0
    quads.append([36, 1, 7])                     # ... and is used by a triangle
    return verts, quads


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], capture_output=True, text=True)


def test_animate_returns_original_units_and_order(model):
    verts, faces = quad_grid()
    result = animate(verts, faces, "a flag waves", model=model, seed=5, **FAST)
    assert result.frames.shape == (16, len(verts), 3) and result.frames.dtype == np.float32
    assert result.seed == 5
    # the duplicated vertex was welded: both copies move identically
    np.testing.assert_array_equal(result.frames[:, 36], result.frames[:, 0])
    # trajectories live in the mesh's own units, around its own position
    assert np.abs(result.frames.mean(axis=(0, 1)) - verts.mean(0)).max() < 0.5 * np.ptp(verts, 0).max()
    again = animate(verts, faces, "a flag waves", model=model, seed=5, **FAST)
    np.testing.assert_array_equal(again.frames, result.frames)
    other = animate(verts, faces, "a flag waves", model=model, seed=6, **FAST)
    assert not np.allclose(other.frames, result.frames)


def test_progress_reports_every_stage_and_cancel_stops(model):
    from backend.sampling import Cancelled

    verts, faces = quad_grid()
    seen = []
    animate(verts, faces, "spin", model=model, seed=1, progress=lambda *a: seen.append(a), **FAST)
    stages = [s for s, _, _ in seen]
    assert stages[0] == "prepare" and stages[-1] == "decode"
    assert [d for s, d, t in seen if s == "sample"] == list(range(1, 5))  # 2 steps x midpoint
    with pytest.raises(Cancelled):
        animate(verts, faces, "spin", model=model, seed=1, cancel=lambda: bool(seen.append(0)) or len(seen) > 12,
                **FAST)


def test_point_cloud_is_animated_with_a_warning(model):
    verts, _ = quad_grid()
    result = animate(verts, [], "float up", model=model, seed=2, **FAST)
    assert result.frames.shape == (16, len(verts), 3)
    assert any("point cloud" in w for w in result.warnings)


@pytest.mark.parametrize("verts, faces, match", [
    (np.zeros((0, 3)), [], "no vertices"),
    (np.array([[0, 0, 0], [1, np.nan, 0], [0, 1, 0]]), [[0, 1, 2]], "NaN"),
    (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]]), [[0, 1, 7]], "out of range"),
    (np.ones((4, 3)), [[0, 1, 2]], "same position"),
    (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]]), [[0, 1]], "fewer than 3"),
])
def test_bad_meshes_are_refused_clearly(model, verts, faces, match):
    with pytest.raises(MeshError, match=match):
        animate(verts, faces, "jump", model=model, **FAST)


def test_prompts_empty_refused_and_long_truncated_with_warning(model):
    verts, faces = quad_grid()
    for prompt in ("", "   ", None):
        with pytest.raises(PromptError):
            animate(verts, faces, prompt, model=model, **FAST)
    long = " ".join(["dragon"] * 1000)
    result = animate(verts, faces, long, model=model, seed=1, **FAST)
    assert any("truncated" in w for w in result.warnings)


def test_cli_animate_writes_npz(tmp_path, tiny_model_dir):
    verts, faces = quad_grid()
    mesh = tmp_path / "grid.obj"
    save_obj(mesh, verts, faces)
    out = tmp_path / "anim.npz"
    proc = run_cli("animate", mesh, "--prompt", "a flag waves", "--model", tiny_model_dir, "--seed", 7,
                   "--steps", 3, "--guidance", 2.5, "--num-traj", 32, "--out", out)
    assert proc.returncode == 0, proc.stderr
    data = np.load(out)
    assert data["frames"].shape == (16, len(verts), 3) and data["frames"].dtype == np.float32
    assert int(data["seed"]) == 7 and str(data["prompt"]) == "a flag waves"
    assert data["faces"].shape[1] == 3
    direct = animate(verts, faces, "a flag waves", model=load_model(tiny_model_dir), seed=7, steps=3,
                     guidance=2.5, num_traj=32)
    np.testing.assert_allclose(data["frames"], direct.frames, atol=1e-5)
    # .npz input works the same
    np.savez(tmp_path / "grid.npz", vertices=verts, faces=np.array(faces[:-1]))
    proc = run_cli("animate", tmp_path / "grid.npz", "--prompt", "wave", "--model", tiny_model_dir,
                   "--steps", 2, "--num-traj", 32, "--out", tmp_path / "b.npz")
    assert proc.returncode == 0, proc.stderr


def test_cli_errors_are_one_line_without_traceback(tmp_path, tiny_model_dir):
    mesh = tmp_path / "bad.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    proc = run_cli("animate", mesh, "--prompt", "jump", "--model", tiny_model_dir, "--out", tmp_path / "o.npz")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:")
    proc = run_cli("animate", tmp_path / "missing.obj", "--prompt", "jump", "--model", tiny_model_dir,
                   "--out", tmp_path / "o.npz")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def broken_copy(src, dst, edit):
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def test_truncated_tampered_and_mismatched_checkpoints(tmp_path, tiny_model_dir):
    def truncate(d):
        data = (d / "flow.safetensors").read_bytes()
        (d / "flow.safetensors").write_bytes(data[: len(data) // 2])

    def tamper(d):
        data = bytearray((d / "vae.safetensors").read_bytes())
        data[8:40] = b"#" * 32  # garbles the JSON header
        (d / "vae.safetensors").write_bytes(bytes(data))

    def resize(d):
        cfg = json.loads((d / "config.json").read_text())
        cfg["vae"]["dim"] = 96
        (d / "config.json").write_text(json.dumps(cfg))

    for name, edit, match in [("cut", truncate, "truncated or corrupted"), ("tampered", tamper, "corrupted"),
                              ("resized", resize, "does not fit its config")]:
        directory = broken_copy(tiny_model_dir, tmp_path / name, edit)
        with pytest.raises(CheckpointError, match=match):
            load_model(directory)
    save_obj(tmp_path / "x.obj", *quad_grid())
    proc = run_cli("animate", tmp_path / "x.obj", "--prompt", "j", "--model", tmp_path / "resized",
                   "--out", tmp_path / "o.npz")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "vae.safetensors does not fit its config" in proc.stderr


def test_missing_models_say_how_to_get_them(tmp_path, monkeypatch):
    from backend import model_manager

    monkeypatch.setenv("ANIMATEANYMESH_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="rf_epoch_f.pth") as err:
        model_manager.resolve_model("official")
    assert "import-official" in str(err.value) and "download-official" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="not a model directory"):
        model_manager.resolve_model(str(tmp_path))

    import huggingface_hub

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ModelNotFoundError, match="dvae_factors/dvae_f.json"):
        model_manager.download_official(tmp_path)


def test_import_official_names_missing_files(tmp_path, fixtures_dir):
    from backend.official_import import import_official

    src = tmp_path / "release"
    shutil.copytree(fixtures_dir / "official_layout" / "checkpoints", src / "checkpoints")
    (src / "checkpoints" / "dvae" / "dvae_f.pth").unlink()
    with pytest.raises(CheckpointError, match="dvae_f.pth"):
        import_official(src, tmp_path / "out")


def test_a_clip_retimed_to_any_length_keeps_the_models_motion(model):
    verts, faces = quad_grid()
    take = animate(verts, faces, "a flag waves", model=model, seed=5, **FAST)
    long = animate(verts, faces, "a flag waves", model=model, seed=5, frames=46, **FAST)
    assert long.frames.shape == (46, len(verts), 3)
    # 46 = 15 * 3 + 1: every third frame is one of the model's own
    np.testing.assert_allclose(long.frames[::3], take.frames, atol=1e-5)
    with pytest.raises(UserError, match="frames must be between"):
        animate(verts, faces, "a flag waves", model=model, frames=1, **FAST)


def test_strength_scales_the_motion_around_the_first_frame(model):
    verts, faces = quad_grid()
    take = animate(verts, faces, "a flag waves", model=model, seed=5, **FAST).frames
    strong = animate(verts, faces, "a flag waves", model=model, seed=5, strength=2.0, **FAST).frames
    np.testing.assert_allclose(strong - strong[:1], 2 * (take - take[:1]), atol=1e-5)
    with pytest.raises(UserError, match="strength must be between"):
        animate(verts, faces, "a flag waves", model=model, strength=2.5, **FAST)


@pytest.mark.parametrize("command", [[], ["animate"], ["bench"], ["train"], ["eval"],
                                     ["import-official"]])
def test_every_help_page_prints(command, capsys):
    # a "%" in a help text (the quality presets' "about 4%") once made argparse crash on --help
    from backend.__main__ import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(command + ["--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out

"""Training: tiny runs lower their loss, resume exactly, and export a model the pipeline runs."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from backend.config import FlowConfig, VAEConfig
from backend.data.procedural import write_dataset
from backend.errors import UserError
from backend.evaluate import amplitude, edge_distortion, jerk
from backend.train.flow import FlowTrainConfig, train_flow
from backend.train.loop import OptimConfig, lr_at
from backend.train.vae import VAETrainConfig, train_vae

TINY_VAE = VAEConfig(enc_depth=1, dec_depth=1, dim=32, output_dim=48, latent_dim=8, heads=2, dim_head=16,
                     T=16, num_traj=32, n_layers=1, token_sampling="positions")


def losses(run_dir, key="loss"):
    return [json.loads(line)[key] for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "train"
    write_dataset(out, 24, seed=3, max_vertices=200, shard_size=8)
    return out


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, dataset):
    run = tmp_path_factory.mktemp("runs") / "vae"
    cfg = VAETrainConfig(vae=TINY_VAE, optim=OptimConfig(steps=60, batch_size=4, lr=3e-3, warmup_steps=5,
                                                         log_every=10, checkpoint_every=30, threads=1),
                         decode_vertices=64)
    train_vae(dataset, run, cfg)
    return run


def test_vae_training_lowers_the_loss(vae_run):
    curve = losses(vae_run, "recon")
    assert len(curve) == 6
    assert np.mean(curve[-2:]) < 0.7 * np.mean(curve[:2]), curve


def test_vae_training_resumes_where_it_stopped(tmp_path, dataset):
    def run(out, stop_at=None):
        cfg = VAETrainConfig(vae=TINY_VAE, optim=OptimConfig(steps=8, batch_size=2, lr=1e-3, warmup_steps=2,
                                                             log_every=2, checkpoint_every=3, threads=1,
                                                             stop_at=stop_at),
                             decode_vertices=32)
        train_vae(dataset, out, cfg)
        from safetensors.torch import load_file
        return load_file(str(out / "vae.safetensors"))

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=4)
    resumed = run(tmp_path / "b")  # picks up state.pt at step 4 and continues to 8
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], atol=1e-6, rtol=1e-5)


def test_flow_training_exports_a_model_the_pipeline_runs(tmp_path, dataset, vae_run):
    from backend.data.shards import iter_dataset
    from backend.model_folder import load_model
    from backend.pipeline import animate

    cfg = FlowTrainConfig(flow=FlowConfig(width=32, layers=1, heads=2),
                          optim=OptimConfig(steps=40, batch_size=8, lr=2e-3, warmup_steps=4, log_every=10,
                                            checkpoint_every=40, threads=1))
    model_dir = train_flow(vae_run, dataset, tmp_path / "flow", cfg)
    curve = losses(tmp_path / "flow")
    assert curve[-1] < curve[0], curve
    model = load_model(model_dir)
    assert model.config.text.kind == "minilm" and model.config.vae.token_sampling == "positions"
    assert model.config.text.subject_reading == "whole_mesh"  # as the default model reads prompts
    sample = next(iter(iter_dataset(dataset)))
    result = animate(sample.frames[0], sample.faces, "a bird flaps its wings", model=model, seed=0, steps=3)
    assert result.frames.shape == sample.frames.shape and np.isfinite(result.frames).all()
    # the export lists the words it learned from, so a prompt beyond them is flagged
    captions = [c for s in iter_dataset(dataset) for c in s.captions]
    assert model.vocabulary is not None and all(model.vocabulary.check(c) == [] for c in captions)
    assert set(model.vocabulary.motions) == {s.family.replace("_", " ") for s in iter_dataset(dataset)}
    flagged = animate(sample.frames[0], sample.faces, "a bird xyzzies", model=model, seed=0, steps=2).warnings
    assert any("'xyzzies'" in w for w in flagged)


def test_partial_json_config_keeps_the_small_model_defaults():
    from backend.errors import UserError

    cfg = VAETrainConfig.from_dict({"optim": {"steps": 7}, "vae": {"dim": 64}})
    default = VAETrainConfig()
    assert cfg.optim.steps == 7 and cfg.optim.lr == default.optim.lr
    assert cfg.vae.dim == 64 and cfg.vae.num_traj == default.vae.num_traj == 128
    assert FlowTrainConfig.from_dict({}).flow.width == FlowTrainConfig().flow.width == 256
    with pytest.raises(UserError, match="nonsense"):
        VAETrainConfig.from_dict({"optim": {"nonsense": 1}})


def test_eval_reports_every_metric(tmp_path, dataset, vae_run, monkeypatch, capsys):
    from backend.evaluate import evaluate, format_report

    cfg = FlowTrainConfig(flow=FlowConfig(width=32, layers=1, heads=2),
                          optim=OptimConfig(steps=4, batch_size=4, warmup_steps=1, log_every=2, threads=1))
    model_dir = train_flow(vae_run, dataset, tmp_path / "flow", cfg)
    report = evaluate(model_dir, dataset, limit=8, steps=3, classifier_steps=20)
    assert report.n_samples == 8 and 0 <= report.accuracy <= 1
    assert report.recon_mean_pct > 0 and report.amplitude_ratio > 0 and report.jerk_ratio > 0
    assert 0 <= report.rigid_clips <= 8 and "keeps edge lengths" in format_report(report)
    table = format_report(report)
    assert "text-motion top-1 accuracy" in table and "no motion" in table
    assert sum(row["n"] for row in report.per_family.values()) == 8
    for row in report.per_family.values():  # every miss is judged as some other family
        assert sum(row["mistaken_for"].values()) == round(row["n"] * (1 - row["accuracy"]))
    assert "| misses judged as |" in table
    worded = evaluate(model_dir, dataset, limit=8, steps=3, classifier_steps=20, wording="training")
    assert worded.wording == "training" and "training-template wording" in format_report(worded)

    from collections import Counter
    from backend.data.shards import iter_dataset

    later = evaluate(model_dir, dataset, limit=8, skip=8, steps=3, classifier_steps=20)
    expected = Counter(s.family for s in list(iter_dataset(dataset))[8:16])
    assert {f: row["n"] for f, row in later.per_family.items()} == dict(expected)
    assert "held-out samples: 8 (clips 9-16 of the folder)" in format_report(later)
    # one record per clip, agreeing with the table: its place in the folder, prompt and judgement
    clips = list(iter_dataset(dataset))[8:16]
    assert [c["index"] for c in later.clips] == list(range(8, 16))
    assert [c["family"] for c in later.clips] == [s.family for s in clips]
    assert all(c["prompt"] in s.captions for c, s in zip(later.clips, clips))
    for f, row in later.per_family.items():
        judged = Counter(c["judged_as"] for c in later.clips if c["family"] == f and c["judged_as"] != f)
        assert dict(judged) == row["mistaken_for"]
    from backend.__main__ import main

    import backend.evaluate as evaluation

    asked = []   # the quality each generated clip was sampled with
    original = evaluation.animate
    monkeypatch.setattr(evaluation, "animate", lambda *a, **kw: asked.append(kw["quality"]) or original(*a, **kw))
    records = tmp_path / "records" / "clips.jsonl"
    assert main(["eval", "--model", str(model_dir), "--data", str(dataset), "--limit", "3", "--judge-steps", "20",
                 "--keep-shape", "off", "--quality", "draft", "--clips", str(records)]) == 0
    assert asked == ["draft"] * 3 and "sampling: draft" in capsys.readouterr().out
    assert evaluate(model_dir, dataset, limit=2, classifier_steps=2).quality == "reference" == asked[-1]
    single = tmp_path / "one"
    write_dataset(single, 1, seed=3, max_vertices=200)
    with pytest.raises(UserError, match="one clip cannot rate its own judge"):
        evaluate(model_dir, single, classifier_steps=2)
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert [c["index"] for c in lines] == [0, 1, 2] and all(c["amplitude_ratio"] > 0 for c in lines)
    blocked = tmp_path / "a_file"
    blocked.write_text("")  # a file where the folder should be: refused before evaluating
    assert main(["eval", "--model", str(model_dir), "--data", str(dataset), "--clips", str(blocked / "c.jsonl")]) == 2
    # a run that fails (here: --skip past the end) leaves an earlier run's records as they were
    before = records.read_text()
    assert main(["eval", "--model", str(model_dir), "--data", str(dataset), "--skip", "99",
                 "--clips", str(records)]) == 2
    assert records.read_text() == before
    fresh = tmp_path / "records" / "new.jsonl"
    assert main(["eval", "--model", str(model_dir), "--data", str(dataset), "--skip", "99",
                 "--clips", str(fresh)]) == 2
    assert not fresh.exists()  # and leaves no empty file behind
    with pytest.raises(UserError, match="--skip 24 leaves no clips"):
        evaluate(model_dir, dataset, skip=24)


def test_training_wording_rewords_a_held_out_clip_with_a_training_template():
    from backend.data.procedural import sample_at
    from backend.data.sample import MotionSample
    from backend.evaluate import prompt_for

    clip = sample_at(0, seed=2, split="eval", max_vertices=200)
    rng = np.random.default_rng(0)
    assert prompt_for(clip, "dataset", rng) in clip.captions
    for _ in range(10):
        prompt = prompt_for(clip, "training", rng)
        assert prompt not in clip.captions and clip.meta["noun"] in prompt and "{" not in prompt
    foreign = MotionSample(frames=clip.frames, faces=clip.faces, captions=["a dog runs"], source="clip.anime")
    with pytest.raises(UserError, match="training wording needs procedural clips"):
        prompt_for(foreign, "training", rng)
    with pytest.raises(UserError, match="wording="):
        prompt_for(clip, "paraphrased", rng)


def test_learning_rate_warms_up_then_decays():
    cfg = OptimConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    rates = [lr_at(s, cfg) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(0.1, abs=0.01)


def test_budget_fits_the_whole_schedule_into_the_wall_time(tmp_path, monkeypatch):
    """--budget-minutes: the step count comes from the speed of the first steps, so the run ends
    its cosine decay on time; a resumed run keeps the fitted schedule. A fake clock makes every
    step take exactly one second."""
    from backend.train import loop

    clock = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock[0])
    model = torch.nn.Linear(2, 1)

    def step(_):
        clock[0] += 1.0
        return {"loss": model(torch.ones(1, 2)).square().sum()}

    cfg = OptimConfig(steps=5, lr=1.0, warmup_steps=10, min_lr_ratio=0.1, budget_minutes=5.0,
                      log_every=1000, checkpoint_every=1000, stop_at=100)
    trainer = loop.Trainer(tmp_path, model, cfg)
    trainer.run(step, torch.Generator())
    # fitted after 10 + 50 steps (60 s) to the 240 s left: 300 steps; stop_at paused it at 100
    assert trainer.step == 100 and cfg.steps == 300
    again = loop.Trainer(tmp_path, model, OptimConfig(steps=5, lr=1.0, warmup_steps=10, min_lr_ratio=0.1,
                                                      budget_minutes=5.0, log_every=1000))
    assert again.resume(torch.Generator())
    history = again.run(step, torch.Generator())
    assert again.step == 300 and again.cfg.steps == 300
    assert history[-1]["lr"] == pytest.approx(0.1, abs=1e-3)  # the decay ended with the run


def test_motion_metrics_on_known_clips():
    t = np.arange(16, dtype=np.float64)[:, None, None]
    rest = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    edges = np.array([[0, 1], [1, 0], [0, 2], [2, 0], [1, 2], [2, 1]])
    translate = rest[None] + t * np.array([0.0, 0.0, 0.1])          # rigid, constant speed
    assert amplitude(translate) == pytest.approx(0.75)               # mean of 0.1 * t over t
    assert jerk(translate) == pytest.approx(0.0, abs=1e-12)
    assert edge_distortion(translate, edges) == pytest.approx(0.0, abs=1e-12)
    grow = rest[None] * (1 + 0.1 * t)                                 # uniform scale
    assert edge_distortion(grow, edges) == pytest.approx(0.75)


def test_mean_decoding_loss_is_reported_and_added(dataset):
    from backend.train.batching import collate
    from backend.train.data import load_prepared
    from backend.train.vae import vae_loss
    from backend.models.vae import DyMeshVAE

    torch.manual_seed(0)
    vae = DyMeshVAE(TINY_VAE)
    batch = collate(load_prepared(dataset, 16)[:3])
    plain = vae_loss(vae, batch, 32, 1e-4, torch.Generator().manual_seed(1), 64)
    both = vae_loss(vae, batch, 32, 1e-4, torch.Generator().manual_seed(1), 64, mean_decode_weight=0.5)
    assert "recon_mean" not in plain and both["recon_mean"] > 0
    # Same generator seed: same tokens, same posterior draw, so the only difference is the new term.
    torch.testing.assert_close(both["loss"], plain["loss"] + 0.5 * both["recon_mean"])


def test_motion_balanced_reconstruction_weighs_clips_by_their_motion(dataset):
    from backend.train.batching import collate
    from backend.train.data import load_prepared
    from backend.train.vae import motion_balance_weights, vae_loss
    from backend.models.vae import DyMeshVAE

    samples = load_prepared(dataset, 16)
    still = dataclasses.replace(samples[0], frames=np.repeat(samples[0].frames[:1], 16, axis=0))
    weights = motion_balance_weights(collate([samples[0], still, samples[1]]), 0.1)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[1] > weights[0] and weights[1] > weights[2]  # the clip that doesn't move
    moved = lambda s: float(np.square(s.frames - s.frames[:1]).sum(-1).mean())
    ratio = (moved(samples[1]) + 0.01) / (moved(samples[0]) + 0.01)
    assert (weights[0] / weights[2]).item() == pytest.approx(ratio, rel=1e-4)

    torch.manual_seed(0)
    vae = DyMeshVAE(TINY_VAE)
    loss = lambda batch, balance: vae_loss(vae, batch, 32, 1e-4, torch.Generator().manual_seed(1), 64,
                                           recon_balance=balance)
    same = collate([samples[0]] * 3)  # equal motion: equal weights, the plain loss
    torch.testing.assert_close(loss(same, 0.1)["loss"], loss(same, 0.0)["loss"])
    mixed = collate(samples[:3])
    plain, balanced = loss(mixed, 0.0), loss(mixed, 0.1)
    torch.testing.assert_close(balanced["recon"], plain["recon"])  # the logged error stays plain
    assert not torch.allclose(balanced["loss"], plain["loss"])


def test_family_weights_draw_a_family_more_often_and_refuse_unknown_names():
    from backend.train.batching import family_sampler

    families = ["shake"] * 10 + ["spin"] * 90
    assert family_sampler(families, {}) is None
    draw = family_sampler(families, {"shake": 9.0})
    picks = draw(20000, torch.Generator().manual_seed(0))
    shake_share = (picks < 10).float().mean().item()
    assert shake_share == pytest.approx(0.5, abs=0.02)  # 10 * 9 against 90 * 1
    with pytest.raises(UserError, match="shke.*its families are: shake, spin"):
        family_sampler(families, {"shke": 3.0})
    for bad in (0.0, -1, "3", None):
        with pytest.raises(UserError, match="positive numbers"):
            family_sampler(families, {"shake": bad})


def test_vae_run_with_family_weights_trains_and_records_them(tmp_path, dataset):
    from backend.train.data import load_prepared

    present = sorted({s.family for s in load_prepared(dataset, 16)})
    cfg = VAETrainConfig.from_dict({"optim": {"steps": 4, "batch_size": 2, "threads": 1, "log_every": 2},
                                    "family_weights": {present[0]: 4.0}})
    cfg = dataclasses.replace(cfg, vae=TINY_VAE, decode_vertices=32)
    train_vae(dataset, tmp_path / "run", cfg)
    assert (tmp_path / "run" / "vae.safetensors").is_file()
    assert len(losses(tmp_path / "run")) == 2
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert recorded["family_weights"] == {present[0]: 4.0}  # the run says how it drew its clips
    with pytest.raises(UserError, match="does not hold"):
        train_vae(dataset, tmp_path / "bad", dataclasses.replace(cfg, family_weights={"no_such": 2.0}))


def test_second_stage_starts_from_an_earlier_run(tmp_path, dataset, vae_run):
    from safetensors.torch import load_file

    from backend.errors import UserError
    from backend.train.loop import Trainer
    from backend.models.vae import DyMeshVAE

    fresh = DyMeshVAE(TINY_VAE)
    Trainer(tmp_path / "stage2", fresh, OptimConfig()).initialise_from(vae_run)
    finished = load_file(str(vae_run / "vae.safetensors"))
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, finished[key])

    other = DyMeshVAE(VAEConfig(enc_depth=1, dec_depth=1, dim=16, latent_dim=8, heads=2, dim_head=8, T=16,
                                num_traj=32, token_sampling="positions"))
    with pytest.raises(UserError, match="do not fit"):
        Trainer(tmp_path / "x", other, OptimConfig()).initialise_from(vae_run)
    with pytest.raises(UserError, match="no state.pt"):
        Trainer(tmp_path / "y", fresh, OptimConfig()).initialise_from(tmp_path / "nowhere")

    # Through the training entry point: a 2-step second stage with the mean-decoding loss.
    cfg = VAETrainConfig(vae=TINY_VAE, optim=OptimConfig(steps=2, batch_size=2, warmup_steps=1, log_every=1,
                                                         threads=1), decode_vertices=32, mean_decode_weight=1.0)
    train_vae(dataset, tmp_path / "stage2_run", cfg, init_from=vae_run)
    rows = [json.loads(line) for line in (tmp_path / "stage2_run" / "log.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and "recon_mean" in rows[0]


def test_fine_tuning_starts_from_a_model_directory(tmp_path, dataset, vae_run):
    """--init takes a finished model folder (half-precision weights, like backend/default_model):
    how a studio fine-tunes the shipped model on its own clips."""
    from safetensors.torch import load_file

    from backend.models.vae import DyMeshVAE
    from backend.train.loop import Trainer

    tiny_flow = FlowConfig(width=32, layers=1, heads=2)
    one_step = lambda: OptimConfig(steps=1, batch_size=4, warmup_steps=1, log_every=1, threads=1)
    model_dir = train_flow(vae_run, dataset, tmp_path / "flow", FlowTrainConfig(flow=tiny_flow, optim=one_step()))
    shipped = load_file(str(model_dir / "vae.safetensors"))
    assert any(v.dtype == torch.float16 for v in shipped.values())

    fresh = DyMeshVAE(TINY_VAE)
    Trainer(tmp_path / "ft", fresh, OptimConfig()).initialise_from(model_dir, model_file="vae.safetensors")
    for key, value in fresh.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, shipped[key].float())
    incomplete = tmp_path / "incomplete"  # a model folder whose flow weights are missing
    incomplete.mkdir()
    (incomplete / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(UserError, match="model directory with flow.safetensors"):
        Trainer(tmp_path / "z", fresh, OptimConfig()).initialise_from(incomplete, model_file="flow.safetensors")

    from backend.vocabulary import Vocabulary, load_vocabulary

    Vocabulary(frozenset({"zebra"})).save(model_dir)  # a word only the starting model knew
    train_vae(dataset, tmp_path / "vae_ft", VAETrainConfig(vae=TINY_VAE, optim=one_step(), decode_vertices=32),
              init_from=model_dir)
    train_flow(vae_run, dataset, tmp_path / "flow_ft", FlowTrainConfig(flow=tiny_flow, optim=one_step()),
               init_from=model_dir)
    for run in ("vae_ft", "flow_ft"):
        assert json.loads((tmp_path / run / "log.jsonl").read_text().splitlines()[0])["step"] == 1
    # the fine-tuned flow still knows the words of its starting model
    assert "zebra" in load_vocabulary(tmp_path / "flow_ft" / "model").known


def test_decoder_stage_keeps_the_latents_and_scores_edge_lengths(tmp_path, dataset, vae_run):
    from backend.train.batching import collate
    from backend.train.data import load_prepared
    from backend.train.vae import edge_length_error, load_trained_vae

    # Known edge error: one edge of rest length 1 stretched to 1.1 in one frame of two.
    target = torch.tensor([[0.0, 0, 0], [1, 0, 0]]).expand(1, 2, 2, 3).clone()
    recon = target.clone()
    recon[0, 1, 1, 0] = 1.1
    edges = torch.tensor([[0, 1]])
    assert edge_length_error(recon, target, edges).item() == pytest.approx(0.01 / 2, rel=1e-5)

    cfg = VAETrainConfig(vae=TINY_VAE, optim=OptimConfig(steps=3, batch_size=2, lr=1e-3, warmup_steps=1,
                                                         log_every=1, threads=1),
                         mean_decode_weight=1.0, edge_weight=0.5, freeze_encoder=True)
    train_vae(dataset, tmp_path / "decoder", cfg, init_from=vae_run)
    rows = [json.loads(line) for line in (tmp_path / "decoder" / "log.jsonl").read_text().splitlines()]
    assert {"edge", "edge_mean", "recon_mean"} <= set(rows[0])
    before, after = load_trained_vae(vae_run), load_trained_vae(tmp_path / "decoder")
    batch = collate(load_prepared(dataset, 16)[:2])
    tokens = torch.arange(32).expand(2, 32)
    with torch.no_grad():
        a = before.encode(batch.frames, batch.edges, tokens, key_bias=batch.key_bias)
        b = after.encode(batch.frames, batch.edges, tokens, key_bias=batch.key_bias)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    torch.testing.assert_close(a.x0, b.x0, rtol=0, atol=0)
    assert any(not torch.equal(p, q) for p, q in zip(before.to_outputs.parameters(), after.to_outputs.parameters()))


def test_ship_vae_swaps_in_a_decoder_stage_and_refuses_a_moved_encoder(tmp_path, dataset, vae_run, load_script):
    """scripts/ship_vae.py: how a decoder fine-tune reaches the shipped model folder."""
    from safetensors.torch import load_file

    from backend.model_folder import load_model
    from backend.train.vae import ENCODER_MODULES

    ship = load_script("ship_vae")

    tiny_flow = FlowConfig(width=32, layers=1, heads=2)
    step = lambda: OptimConfig(steps=2, batch_size=2, lr=1e-3, warmup_steps=1, log_every=1, threads=1)
    model_dir = train_flow(vae_run, dataset, tmp_path / "flow", FlowTrainConfig(flow=tiny_flow, optim=step()))
    train_vae(dataset, tmp_path / "dec", VAETrainConfig(vae=TINY_VAE, optim=step(), decode_vertices=32,
                                                        freeze_encoder=True), init_from=model_dir)
    changed = ship.ship_vae(tmp_path / "dec", model_dir, tmp_path / "shipped")
    assert changed and not any(k.split(".")[0] in ENCODER_MODULES for k in changed)
    old, new = load_file(str(model_dir / "vae.safetensors")), load_file(str(tmp_path / "shipped" / "vae.safetensors"))
    assert all(new[k].dtype == old[k].dtype for k in old)
    assert (tmp_path / "shipped" / "flow.safetensors").read_bytes() == (model_dir / "flow.safetensors").read_bytes()
    load_model(tmp_path / "shipped")

    train_vae(dataset, tmp_path / "full", VAETrainConfig(vae=TINY_VAE, optim=step(), decode_vertices=32),
              init_from=model_dir)
    with pytest.raises(SystemExit, match="encoder tensors differ"):
        ship.ship_vae(tmp_path / "full", model_dir, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_thin_caption_leaves_words_out_in_order_and_keeps_one():
    from backend.train.flow import thin_caption

    caption = "the tail of the dog sweeps back and forth quickly"
    g = torch.Generator().manual_seed(0)
    thinned = [thin_caption(caption, 0.3, g) for _ in range(400)]
    words = caption.split()
    for t in thinned:
        kept = t.split()
        assert kept and all(w in words for w in kept)
        positions = [words.index(w) for w in kept if words.count(w) == 1]
        assert positions == sorted(positions)  # order kept
    dropped = 1 - np.mean([len(t.split()) for t in thinned]) / len(words)
    assert 0.25 < dropped < 0.35, dropped
    assert thin_caption(caption, 0.0, g) == caption
    assert all(thin_caption("wags", 0.99, g) == "wags" for _ in range(20))  # never empty
    assert thin_caption("", 0.3, g) == ""
    again = torch.Generator().manual_seed(0)
    assert [thin_caption(caption, 0.3, again) for _ in range(400)] == thinned


def test_caption_cache_encodes_unseen_captions_like_the_encoder():
    from backend.models.text import MiniLMTextEncoder
    from backend.train.flow import CaptionCache

    encoder = MiniLMTextEncoder()
    cache = CaptionCache(encoder, ["a dog wags its tail", "a bird flaps its wings"])
    got = cache(["a dog wags its tail", "a dog tail", "a bird flaps its wings", "a dog tail"])
    with torch.inference_mode():
        want = encoder.encode(["a dog wags its tail", "a dog tail", "a bird flaps its wings"]).float()
    torch.testing.assert_close(got[[0, 1, 2]], want, atol=2e-3, rtol=2e-3)  # the cache is float16
    assert torch.equal(got[1], got[3]) and len(cache.index) == 2


@pytest.mark.parametrize("bad", [{"word_dropout": 1.0}, {"word_dropout": -0.1}, {"word_dropout": "some"},
                                 {"word_dropout_rate": True}])
def test_word_dropout_options_refuse_non_chances(bad):
    with pytest.raises(UserError, match="word_dropout"):
        FlowTrainConfig.from_dict(bad)


def test_flow_run_with_word_dropout_trains_and_records_it(tmp_path, dataset, vae_run, monkeypatch):
    import backend.train.flow as flow_training

    thinned = []
    original = flow_training.thin_caption
    monkeypatch.setattr(flow_training, "thin_caption", lambda *a: thinned.append(original(*a)) or thinned[-1])
    cfg = FlowTrainConfig.from_dict({"flow": {"width": 32, "layers": 1, "heads": 2},
                                     "optim": {"steps": 40, "batch_size": 8, "lr": 2e-3, "warmup_steps": 4,
                                               "log_every": 10, "checkpoint_every": 40, "threads": 1},
                                     "word_dropout": 0.5})
    train_flow(vae_run, dataset, tmp_path / "flow", cfg)
    curve = losses(tmp_path / "flow")
    assert curve[-1] < curve[0], curve
    recorded = json.loads((tmp_path / "flow" / "train_config.json").read_text())
    assert recorded["word_dropout"] == 0.5 and recorded["word_dropout_rate"] == 0.3
    assert 0.3 < len(thinned) / (40 * 8) < 0.7  # about half the captions shown were thinned


def test_flow_run_with_subject_swap_shows_other_subjects_and_knows_their_words(tmp_path, dataset, vae_run,
                                                                             monkeypatch):
    import backend.train.flow as flow_training
    from backend.model_folder import load_model

    shown = []   # (caption, whether it is one of the dataset's own)
    original = flow_training.CaptionCache.__call__
    monkeypatch.setattr(flow_training.CaptionCache, "__call__", lambda self, captions: shown.extend(
        (c, c in self.index) for c in captions) or original(self, captions))
    cfg = FlowTrainConfig.from_dict({"flow": {"width": 32, "layers": 1, "heads": 2},
                                     "optim": {"steps": 12, "batch_size": 8, "lr": 2e-3, "warmup_steps": 2,
                                               "log_every": 4, "checkpoint_every": 12, "threads": 1},
                                     "subject_swap": 0.5})
    model_dir = train_flow(vae_run, dataset, tmp_path / "flow", cfg)
    assert json.loads((tmp_path / "flow" / "train_config.json").read_text())["subject_swap"] == 0.5
    swapped = [c for c, own in shown if not own]
    assert 0.25 < len(swapped) / len(shown) < 0.75, (len(swapped), len(shown))
    assert not load_model(model_dir).vocabulary.unknown("a barrel with a lion head")
    with pytest.raises(UserError, match="subject_swap"):
        FlowTrainConfig.from_dict({"subject_swap": 1.5})
    with pytest.raises(UserError, match="compound_subjects must be one of whole_body, all"):
        FlowTrainConfig.from_dict({"compound_subjects": "parts"})
    with pytest.raises(UserError, match="compound_possessive must be a number from 0"):
        FlowTrainConfig.from_dict({"compound_possessive": -0.1})


@pytest.mark.parametrize("bad, message", [
    ({"token_dropout": 0.3}, "sentence_conditioning"),
    ({"token_dropout": 1.0, "flow": {"sentence_conditioning": True}}, "token_dropout"),
    ({"token_dropout": "half", "flow": {"sentence_conditioning": True}}, "token_dropout"),
    ({"flow": {"sentence_conditioning": "yes"}}, "true or false"),
])
def test_token_dropout_needs_the_sentence_path_and_a_chance(bad, message):
    with pytest.raises(UserError, match=message):
        FlowTrainConfig.from_dict(bad)


def test_a_flow_gains_the_sentence_path_on_a_model_folders_own_vae(tmp_path, dataset, vae_run, monkeypatch, capsys):
    """How the shipped flow continues on a lent GPU with VAE_MINUTES=0: --vae is the model folder
    (its VAE and its latent stats, not the clips' own), --init its flow, which lacks the new path."""
    import backend.train.flow as flow_training
    from backend.config import ModelConfig
    from backend.data.shards import iter_dataset
    from backend.model_folder import load_model
    from backend.pipeline import animate
    from backend.train.loop import Trainer

    tiny = {"width": 32, "layers": 1, "heads": 2}
    optim = {"steps": 40, "batch_size": 8, "lr": 2e-3, "warmup_steps": 4, "log_every": 10,
             "checkpoint_every": 40, "threads": 1}
    start = train_flow(vae_run, dataset, tmp_path / "start", FlowTrainConfig.from_dict({"flow": tiny, "optim": optim}))
    stats = ModelConfig.load(start).stats
    stats.ft_std *= 2  # a scale the clips would not give, so using it shows it was read
    config = ModelConfig.load(start)
    config.stats = stats
    config.save(start)

    hidden = []
    original = flow_training.flow_loss
    monkeypatch.setattr(flow_training, "flow_loss",
                        lambda *a, **k: hidden.append(float((a[-1] == 0).float().mean())) or original(*a, **k))
    cfg = FlowTrainConfig.from_dict({"flow": {**tiny, "sentence_conditioning": True}, "optim": optim,
                                     "token_dropout": 0.5})
    capsys.readouterr()
    model_dir = train_flow(start, dataset, tmp_path / "grown", cfg, init_from=start)
    assert "new, starting from zero: sentence_mlp" in capsys.readouterr().err
    curve = losses(tmp_path / "grown")
    assert curve[-1] < curve[0], curve
    assert 0.3 < np.mean(hidden) < 0.7  # about half the samples saw the sentence alone
    model = load_model(model_dir)
    assert model.config.flow.sentence_conditioning and model.config.stats == stats
    assert model.flow.sentence_mlp.c_proj.weight.abs().sum() > 0  # the path learned something
    sample = next(iter(iter_dataset(dataset)))
    result = animate(sample.frames[0], sample.faces, "a bird flaps its wings", model=model, seed=0, steps=3)
    assert np.isfinite(result.frames).all()

    # the other way round is another architecture: weights the plain flow has no place for
    plain = flow_training.DyMeshMMDiT(FlowConfig(input_channels=16, output_channels=16, **tiny), 384)
    with pytest.raises(UserError, match="do not fit"):
        Trainer(tmp_path / "x", plain, OptimConfig()).initialise_from(tmp_path / "grown")
    with pytest.raises(UserError, match="--stats"):
        train_flow(start, dataset, tmp_path / "y", cfg, stats_path=tmp_path / "nowhere.json")
    # `train stats` on a model folder must not drop a stats.json there that would override its own
    from backend.train.flow import compute_stats

    with pytest.raises(UserError, match="--out FILE"):
        compute_stats(start, dataset, device="cpu")
    assert not (start / "stats.json").exists()
    written = compute_stats(start, dataset, out=tmp_path / "new_stats.json", device="cpu")
    assert json.loads((tmp_path / "new_stats.json").read_text())["ft_std"] == written.ft_std

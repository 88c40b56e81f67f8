"""Command line: python -m backend {animate, serve, models, make-dataset, train, vocabulary, eval, eval-prompts, bench, ...}.

Errors a user can fix print as one line (`error: ...`) with exit status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from aam_seam.codes import SeamError
from aam_seam.limits import (DEFAULT_LOOP, DEFAULT_QUALITY, KEEP_SHAPE_MODES, LOOP_METHODS, MODEL_KEEP_SHAPE,
                             QUALITY_PRESETS, chained, check_repeat)

from .denormals import flush_denormals
from .errors import UserError
from .solvers import solver_names
from .subject_reading import READINGS as SUBJECT_READINGS


def main(argv: list[str] | None = None) -> int:
    # Spinning OpenMP threads made a 2-thread run 18x slower beside one other busy process
    # (README, Performance); sleeping ones cost ~nothing idle. Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except (UserError, SeamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend", description="AnimateAnyMesh backend")
    sub = p.add_subparsers(title="commands")

    a = sub.add_parser("animate", help="animate a mesh file from a text prompt")
    a.add_argument("mesh", type=Path, help=".obj or .npz (vertices, faces)")
    a.add_argument("--prompt", required=True)
    a.add_argument("--model", default="default", help="model directory, or a name: default, official")
    a.add_argument("--threads", type=int, default=0,
                   help="torch's CPU threads (0: torch's default, one per core)")
    a.add_argument("--out", type=Path, required=True, help="output .npz (frames, faces, prompt, seed)")
    a.add_argument("--seed", type=int, default=None)
    a.add_argument("--steps", type=int, default=None,
                   help="solver grid points, for experts: replaces the --quality schedule (official: 64)")
    a.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (official: 3.0)")
    a.add_argument("--num-traj", type=int, default=None, help="latent tokens (default max(512, N/8))")
    a.add_argument("--frames", type=int, default=None,
                   help="retime the clip to this many frames (default: the model's 16)")
    a.add_argument("--strength", type=float, default=None,
                   help="scale the motion, 0 to 2 (default 1: as the model made it)")
    a.add_argument("--quality", choices=list(QUALITY_PRESETS), default=None,
                   help=f"sampling schedule (default {DEFAULT_QUALITY}): "
                   + "; ".join(f"{k}: {v}" for k, v in QUALITY_PRESETS.items()).replace("%", "%%"))
    a.add_argument("--solver", choices=solver_names(), default=None,
                   help="ODE solver, for experts: with --steps it replaces the --quality schedule")
    a.add_argument("--then", action="append", default=[], metavar="PROMPT",
                   help="chain another segment that starts where the last one ends (repeatable)")
    a.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="play the prompt (and its --then chain) K times in a row, one segment each")
    a.add_argument("--loop", nargs="?", const=DEFAULT_LOOP, default=None, choices=list(LOOP_METHODS),
                   help=f"make the clip loop seamlessly (method, default {DEFAULT_LOOP}): "
                   + "; ".join(f"{k}: {v}" for k, v in LOOP_METHODS.items()))
    a.add_argument("--keep-shape", choices=list(KEEP_SHAPE_MODES), default=None,
                   help=f"pull each frame back towards the mesh's edge lengths (default {MODEL_KEEP_SHAPE}): "
                   + "; ".join(f"{k}: {v}" for k, v in KEEP_SHAPE_MODES.items()))
    a.add_argument("--mask", default=None, metavar="WEIGHTS",
                   help="per-vertex weights 0 (pinned) to 1 (free): a .npy, or a .npz's 'mask' array "
                   "(FILE.npz:NAME for another array)")
    a.add_argument("--mask-falloff", type=float, default=None, metavar="SHARE",
                   help="soften the mask's edge over this share of the mesh's size, e.g. 0.1")
    a.add_argument("--variations", type=int, default=None, metavar="K",
                   help="K takes with seeds seed..seed+K-1 in one batched pass; writes OUT_1.npz .. "
                   "OUT_K.npz and, with --preview, one sheet with a row per take")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    a.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    a.add_argument("--cache", default=None, help="model cache folder (default ~/.cache/animateanymesh)")
    a.add_argument("--preview", type=Path, default=None, help="also write a contact sheet of the frames (PNG)")
    a.set_defaults(run=cmd_animate)

    bt = sub.add_parser("batch", help="animate every job of a JOBS.jsonl file, here or on a Ray cluster",
                        description="Run the animate jobs of JOBS.jsonl: one JSON object per line with "
                        "mesh, prompt and out, plus any animate option under its own name (seed, "
                        "quality, then as a list, num_traj ...). A status file beside it records every "
                        "job; running again skips the jobs that are done.")
    bt.add_argument("jobs", type=Path, help="the jobs file (.jsonl)")
    bt.add_argument("--model", default="default", help="model directory, or a name: default, official")
    bt.add_argument("--cache", default=None, help="model cache folder (default ~/.cache/animateanymesh)")
    bt.add_argument("--device", default="auto", help="auto, cpu, cuda ... (on Ray: auto uses a GPU "
                    "per worker when the cluster has them)")
    bt.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    bt.add_argument("--threads", type=int, default=0,
                    help="torch's CPU threads per worker (0: here torch's default; on Ray the "
                    "worker's CPUs)")
    bt.add_argument("--attempts", type=int, default=2,
                    help="tries per job when a worker dies or fails inside (default 2)")
    bt.add_argument("--status", type=Path, default=None,
                    help="the status file (default: JOBS.status.json beside the jobs file)")
    bt.add_argument("--redo", action="store_true", help="run every job again, even those done")
    bt.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="run on Ray (an optional extra: pip install -r requirements-ray.txt); "
                    "without ADDRESS a Ray on this machine is started, 'auto' joins its running "
                    "cluster, ray://HOST:10001 a remote one")
    bt.add_argument("--workers", type=int, default=0,
                    help="Ray workers, each with one warm model (0: one per GPU, else one per "
                    "--cpus-per-worker CPUs of the cluster)")
    bt.add_argument("--cpus-per-worker", type=int, default=1)
    bt.add_argument("--events", action="store_true",
                    help="also print each event as one JSON object per line on stdout (for programs)")
    bt.set_defaults(run=cmd_batch)

    i = sub.add_parser("import-official", help="convert an official checkpoint folder to a model directory")
    i.add_argument("src", type=Path, help="folder holding checkpoints/ (or checkpoints/ itself)")
    i.add_argument("--out", type=Path, default=None, help="model directory (default: CACHE/models/official)")
    i.add_argument("--clip-config", type=Path, default=None,
                   help="Hugging Face CLIPTextConfig JSON of the text encoder (default: SD-1.5's)")
    i.add_argument("--tokenizer", type=Path, default=None, help="folder with vocab.json + merges.txt")
    i.add_argument("--pad-to", type=int, default=4096,
                   help="official zero-padding length (test_drive.py's max_length, default 4096)")
    i.add_argument("--rf-exp", default="rf_model")
    i.add_argument("--rf-epoch", default="f")
    i.add_argument("--cache", default=None)
    i.set_defaults(run=cmd_import)

    d = sub.add_parser("download-official", help="download the official weights (needs network) and import them")
    d.add_argument("--cache", default=None)
    d.set_defaults(run=cmd_download)

    from .server import add_arguments as server_arguments

    sv = server_arguments(sub.add_parser(
        "serve", help="run the backend server for the Blender add-on (protocol on stdin/stdout)"))
    sv.set_defaults(run=cmd_serve)

    m = sub.add_parser("models", help="list installed models")
    m.add_argument("--cache", default=None)
    m.set_defaults(run=cmd_models)

    g = sub.add_parser("make-dataset", help="write the procedural training set (shards + dataset.json)")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--split", choices=["train", "eval"], default="train")
    g.add_argument("--max-vertices", type=int, default=2500, help="vertex budget per mesh")
    g.add_argument("--workers", type=int, default=1, help="processes building shards (same files for any number)")
    g.set_defaults(run=cmd_make_dataset)

    t = sub.add_parser("train", help="train our own model: vae, stats, flow")
    tsub = t.add_subparsers(title="what")
    for what in ("vae", "flow"):
        tp = tsub.add_parser(what, help=f"train the {what} model")
        tp.add_argument("--data", type=Path, required=True, help="dataset folder of shards")
        tp.add_argument("--out", type=Path, required=True, help="run folder (resumes if it holds state.pt)")
        tp.add_argument("--config", type=Path, default=None, help="JSON training config")
        if what == "flow":
            tp.add_argument("--vae", type=Path, required=True, help="finished VAE run folder, or a model directory (its VAE and latent stats)")
            tp.add_argument("--stats", type=Path, default=None, help="latent stats JSON (default VAE_RUN/stats.json, or a model directory's own)")
        for opt, typ in (("steps", int), ("batch-size", int), ("lr", float), ("seed", int),
                         ("threads", int), ("max-minutes", float), ("stop-at", int),
                         ("budget-minutes", float)):
            tp.add_argument(f"--{opt}", type=typ, default=None)
        tp.add_argument("--device", default=None)
        tp.add_argument("--init", type=Path, default=None,
                        help="start from the weights of this earlier run folder, or of a model directory such as "
                             "backend/default_model (fresh optimizer and schedule)")
        tp.set_defaults(run=cmd_train, what=what)
    ts = tsub.add_parser("stats", help="latent statistics of a trained VAE over a dataset")
    ts.add_argument("--vae", type=Path, required=True)
    ts.add_argument("--data", type=Path, required=True)
    ts.add_argument("--device", default="auto", help="where the VAE encodes the clips: auto, cpu, cuda ...")
    ts.add_argument("--out", type=Path, default=None)
    ts.set_defaults(run=cmd_stats)

    v = sub.add_parser("vocabulary", help="write a model folder's vocabulary.json from the datasets its flow learned from")
    v.add_argument("--model", type=Path, required=True, help="model directory to write vocabulary.json into")
    v.add_argument("--data", type=Path, action="append", required=True,
                   help="dataset folder whose captions the flow was trained on (repeat for several)")
    v.add_argument("--replace", action="store_true", help="drop the words already in the model's vocabulary.json")
    v.set_defaults(run=cmd_vocabulary)

    e = sub.add_parser("eval", help="evaluate a model on a held-out dataset and print a table")
    e.add_argument("--model", default="default")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--limit", type=int, default=None, help="evaluate on at most this many samples")
    e.add_argument("--skip", type=int, default=0,
                   help="start after this many samples (a validation slice disjoint from the reported one)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--cache", default=None)
    e.add_argument("--judge-steps", type=int, default=3000, help="training steps of the motion-family judge")
    e.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the model's)")
    e.add_argument("--wording", choices=["dataset", "training"], default="dataset",
                   help="prompt with the clips' own captions, or (diagnostic) with training-template wording")
    e.add_argument("--keep-shape", choices=list(KEEP_SHAPE_MODES), default=None,
                   help=f"Keep Shape of the generated clips (default {MODEL_KEEP_SHAPE})")
    e.add_argument("--quality", choices=list(QUALITY_PRESETS), default="reference",
                   help="sampling preset of the generated clips (default reference: the model's own schedule, "
                   "which its reported figures use; standard: what a click gives by default)")
    e.add_argument("--clips", type=Path, default=None,
                   help="also write one JSON line per evaluated clip (prompt, family, what the judge saw)")
    e.set_defaults(run=cmd_eval)

    ep = sub.add_parser(
        "eval-prompts", help="animate meshes it never saw with every whole-body motion under many "
        "subjects, and report top-1 and motion amplitude per subject class",
        description="Ask for every whole-body motion family in the training wording with the "
        "subject taken from five classes (nouns of the training captions, nouns outside them, "
        "nouns with a part word, no noun, pronouns) on meshes the model never saw; the judge of "
        "`eval` labels each take. Prints markdown tables; --out keeps one JSON line per take.")
    ep.add_argument("--model", default="default")
    ep.add_argument("--cache", default=None)
    ep.add_argument("--meshes", default="suzanne:2,cube:3,quadruped:6000",
                    help="comma-separated: suzanne:LEVEL (Subdivision Surface), cube / uv_sphere / "
                    "ico_sphere / cylinder / cone / torus:LEVEL (simple subdivision), quadruped / "
                    "winged_quadruped / bird / humanoid / snake / fish:VERTICES (a held-out procedural "
                    "creature), bunny:PATH (the npm package bunny 1.0.1), or an .obj / .npz file "
                    "(default: %(default)s)")
    ep.add_argument("--families", default=None,
                    help="comma-separated whole-body families (default: all 17)")
    ep.add_argument("--classes", default=None,
                    help="comma-separated subject classes: caption, unseen, part, none, pronoun "
                    "(default: all)")
    ep.add_argument("--subjects-per-class", type=int, default=2, metavar="K",
                    help="the first K subjects of each class (default 2)")
    ep.add_argument("--seeds", default="1", help="comma-separated seeds, one take each (default 1)")
    ep.add_argument("--quality", choices=list(QUALITY_PRESETS), default=DEFAULT_QUALITY,
                    help=f"sampling schedule of every take (default {DEFAULT_QUALITY}, as animate; "
                    "draft halves the time)")
    ep.add_argument("--num-traj", type=int, default=None,
                    help="latent tokens (default max(512, N/8), as animate)")
    ep.add_argument("--judge-clips", type=int, default=40,
                    help="ground-truth clips per family the judge learns from (default 40)")
    ep.add_argument("--judge-steps", type=int, default=3000, help="training steps of the judge")
    ep.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: torch's default)")
    ep.add_argument("--keep-shape", choices=list(KEEP_SHAPE_MODES), default=None,
                    help=f"Keep Shape of every take (default {MODEL_KEEP_SHAPE})")
    ep.add_argument("--keep-shape-study", action="store_true",
                    help="make every take with Keep Shape off, then measure it off, on and auto at "
                    "several thresholds (edge distortion, motion kept, top-1)")
    ep.add_argument("--subject-reading", choices=list(SUBJECT_READINGS), default=None,
                    help="how prompts' subjects are read (default: the model's text.subject_reading; "
                    "literal measures the flow alone on subjects like 'the monkey head')")
    ep.add_argument("--out", type=Path, default=None, help="also write one JSON line per take (.jsonl)")
    ep.set_defaults(run=cmd_eval_prompts)

    b = sub.add_parser("bench", help="time and memory of each stage at several mesh sizes")
    b.add_argument("--sizes", default="5000,20000,50000,200000")
    b.add_argument("--device", default="auto")
    b.add_argument("--dense-up-to", type=int, default=20000,
                   help="largest N for the dense-attention reference column")
    b.add_argument("--num-traj", type=int, default=None, help="tokens (default the official max(512, N/8))")
    b.add_argument("--threads", type=int, default=None)
    b.set_defaults(run=cmd_bench)
    return p


class ConsoleProgress:
    """Stage lines, plus a bar for the sampler's evaluations (stderr, so stdout stays clean)."""

    def __init__(self):
        self.bar = None

    def __call__(self, stage: str, done: int, total: int):
        from tqdm import tqdm

        from aam_seam.stages import Stage

        if stage == Stage.SAMPLE:
            if self.bar is None:
                self.bar = tqdm(total=total, desc="sampling", unit="eval", file=sys.stderr)
            self.bar.n = done
            self.bar.refresh()
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(f"[{stage}] done", file=sys.stderr)


def cmd_animate(args) -> int:
    flush_denormals()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from .mesh import triangulate
    from .mesh_io import load_mesh, load_weights
    from .model_manager import resolve_model
    from .batch_run import write_takes
    from .pipeline import animate

    if args.out.suffix.lower() != ".npz":
        raise UserError(f"--out must end in .npz (got {args.out.name}).")
    # Everything that can fail without the model fails before it loads: the run is not thrown away.
    check_writable(args.out, "--out")
    if args.preview:
        if args.preview.suffix.lower() != ".png":
            raise UserError(f"--preview must end in .png (got {args.preview.name}).")
        check_writable(args.preview, "--preview")
    try:
        check_repeat(args.repeat)
    except SeamError as exc:
        raise UserError(f"--{exc.message}", code=exc.code) from None
    then = chained(args.prompt, args.then, args.repeat)
    vertices, faces = load_mesh(args.mesh)
    mask = load_weights(args.mask) if args.mask else None
    model_dir = resolve_model(args.model, args.cache)
    result = animate(vertices, faces, args.prompt, model=model_dir, seed=args.seed,
                     guidance=args.guidance, steps=args.steps, num_traj=args.num_traj,
                     solver=args.solver, quality=args.quality, device=args.device,
                     precision=args.precision, frames=args.frames, strength=args.strength, then=then, loop=args.loop,
                     mask=mask, mask_falloff=args.mask_falloff, variations=args.variations,
                     keep_shape=args.keep_shape, progress=ConsoleProgress())
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    written = write_takes(args.out, result.takes, result.seeds, faces, args.prompt, then, args.loop,
                          result.keep_shape)
    for path, clip, seed in zip(written, result.takes, result.seeds):
        print(f"wrote {path}: {clip.shape[0]} frames x {clip.shape[1]} vertices, seed {seed}"
              + (", loops" if args.loop else ""))
    if args.preview:
        from .contact_sheet import contact_sheet, takes_sheet

        triangles = triangulate(faces)
        sheet = (takes_sheet(result.takes, triangles, args.preview, result.seeds) if len(written) > 1
                 else contact_sheet(result.frames, triangles, args.preview))
        print(f"wrote {sheet}")
    return 0


def cmd_batch(args) -> int:
    from .batch_jobs import BatchStatus, read_jobs
    from .batch_run import BatchSettings, Reporter, run_batch, stop_on_signals

    for option, value in (("--attempts", args.attempts), ("--cpus-per-worker", args.cpus_per_worker)):
        if value < 1:
            raise UserError(f"{option} must be at least 1 (got {value}).")
    if args.workers < 0 or args.threads < 0:
        raise UserError("--workers and --threads take 0 (automatic) or a positive count.")
    stop_on_signals()
    jobs = read_jobs(args.jobs)
    status_path = args.status or args.jobs.with_name(f"{args.jobs.stem}.status.json")
    check_writable(status_path, "--status")
    status = BatchStatus.resume(jobs, status_path, args.attempts, redo=args.redo)
    skipped = len(jobs) - len(status.pending())
    if skipped:
        print(f"{skipped} of {len(jobs)} jobs were done by an earlier run (their outputs are there); "
              "--redo runs them again.", file=sys.stderr)
    settings = BatchSettings(model=args.model, cache=args.cache, device=args.device,
                             precision=args.precision, threads=args.threads,
                             max_attempts=args.attempts)
    report = Reporter(len(status.pending()), json_lines=args.events)
    counts = run_batch(jobs, status, settings, report, ray_address=args.ray or None,
                       use_ray=args.ray is not None, workers=args.workers,
                       cpus_per_worker=args.cpus_per_worker)
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    print(f"batch finished: {summary}; status in {status_path}", file=sys.stderr)
    return 0 if counts["failed"] == 0 and counts["cancelled"] == 0 else 1


def check_writable(path: Path, option: str) -> None:
    """A file can be created at `path` (its folder is made if missing); UserError otherwise."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name inside it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write {option} {path} ({exc.strerror or exc}); choose a writable "
                        "folder.") from None


def cmd_import(args) -> int:
    from .official_import import import_official
    from .model_manager import cache_dir

    if args.pad_to < 1:
        raise UserError(f"--pad-to must be a positive number of points (got {args.pad_to}); the "
                        "official value is 4096.")
    out = args.out or cache_dir(args.cache) / "models" / "official"
    config = import_official(args.src, out, clip_config=args.clip_config, tokenizer_dir=args.tokenizer,
                             rf_exp=args.rf_exp, rf_epoch=args.rf_epoch, pad_to=args.pad_to)
    print(f"imported {config.name} into {out} (VAE dim {config.vae.dim}, flow width "
          f"{config.flow.width} x {config.flow.layers}, text encoder {config.text.kind} "
          f"{config.text.width} x {config.text.layers})")
    return 0


def cmd_download(args) -> int:
    from .model_manager import download_official

    print(f"installed the official model in {download_official(args.cache)}")
    return 0


def cmd_serve(args) -> int:
    from .server import run

    return run(args) or 0


def cmd_models(args) -> int:
    from .model_manager import EMBEDDED_DIR, cache_dir, list_models

    print(f"default: {EMBEDDED_DIR if (EMBEDDED_DIR / 'config.json').is_file() else 'not installed'}")
    for name in list_models(args.cache):
        print(f"{name}: {cache_dir(args.cache) / 'models' / name}")
    return 0


def cmd_make_dataset(args) -> int:
    from .data.procedural import write_dataset

    write_dataset(args.out, args.count, args.seed, args.split, max_vertices=args.max_vertices,
                  workers=args.workers)
    print(f"wrote {args.count} {args.split} samples to {args.out}")
    return 0


def cmd_train(args) -> int:
    flush_denormals()
    import json

    overrides = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                 "threads": args.threads, "max_minutes": args.max_minutes, "device": args.device,
                 "stop_at": args.stop_at, "budget_minutes": args.budget_minutes}
    values = json.loads(args.config.read_text()) if args.config else {}
    values.setdefault("optim", {}).update({k: v for k, v in overrides.items() if v is not None})
    if args.what == "vae":
        from .train.vae import VAETrainConfig, train_vae

        train_vae(args.data, args.out, VAETrainConfig.from_dict(values), args.init)
    else:
        from .train.flow import FlowTrainConfig, train_flow

        train_flow(args.vae, args.data, args.out, FlowTrainConfig.from_dict(values), args.stats, args.init)
    return 0


def cmd_stats(args) -> int:
    flush_denormals()
    from .train.flow import compute_stats

    compute_stats(args.vae, args.data, args.out, args.device)
    return 0


def cmd_vocabulary(args) -> int:
    from .data.shards import iter_dataset
    from .vocabulary import Vocabulary, load_vocabulary

    if not (args.model / "config.json").is_file():
        raise UserError(f"{args.model} is not a model directory (no config.json).")
    captions, families = [], []
    for folder in args.data:
        if not folder.is_dir():
            raise UserError(f"dataset folder {folder} not found.")
        for sample in iter_dataset(folder):
            captions += list(sample.captions)
            families.append(sample.family)
    if not captions:
        raise UserError(f"no captions in {', '.join(map(str, args.data))}: they hold no samples.")
    vocab = Vocabulary.from_captions(captions, families)
    if not args.replace:
        vocab = vocab.merged(load_vocabulary(args.model))
    path = vocab.save(args.model)
    print(f"wrote {path}: {len(vocab.known)} words, {len(vocab.motions)} motions")
    return 0


def cmd_eval(args) -> int:
    flush_denormals()
    from .evaluate import evaluate, format_report
    from .model_manager import resolve_model

    # Check --clips can be written before the evaluation runs, without emptying a file an earlier
    # run wrote: it is replaced only once the new records exist.
    created = False
    if args.clips:
        try:
            args.clips.parent.mkdir(parents=True, exist_ok=True)
            created = not args.clips.exists()
            with args.clips.open("a"):
                pass
        except OSError as exc:
            raise UserError(f"cannot write --clips {args.clips}: {exc.strerror or exc}; choose another file.") from exc
    try:
        report = evaluate(resolve_model(args.model, args.cache), args.data, limit=args.limit, seed=args.seed,
                          classifier_steps=args.judge_steps, guidance=args.guidance,
                          wording=args.wording, skip=args.skip, keep_shape=args.keep_shape,
                          quality=args.quality)
    except BaseException:
        if created:
            args.clips.unlink(missing_ok=True)
        raise
    print(format_report(report))
    if args.clips:
        args.clips.write_text("".join(json.dumps(c) + "\n" for c in report.clips))
        print(f"wrote {len(report.clips)} clip records to {args.clips}", file=sys.stderr)
    return 0


def cmd_eval_prompts(args) -> int:
    from . import eval_prompts as ep
    from .model_manager import resolve_model
    from .reference_meshes import load_meshes, parse_spec

    def listed(text):
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

    try:
        seeds = [int(s) for s in listed(args.seeds) or []]
    except ValueError:
        raise UserError(f"--seeds takes whole numbers separated by commas (got {args.seeds!r}).") from None
    families, classes = ep.check_options(listed(args.families), listed(args.classes),
                                         args.subjects_per_class, seeds)
    if args.judge_clips < 2 or args.judge_steps < 1:
        raise UserError("--judge-clips must be at least 2 and --judge-steps at least 1.")
    if args.threads < 0:
        raise UserError(f"--threads takes 0 (automatic) or a positive count (got {args.threads}).")
    if args.num_traj is not None and args.num_traj < 1:
        raise UserError(f"--num-traj must be a positive number of tokens (got {args.num_traj}).")
    specs = [parse_spec(s) for s in listed(args.meshes) or []]
    if not specs:
        raise UserError("--meshes names no mesh.")
    if args.out:
        check_writable(args.out, "--out")
    # every input problem shows before the model loads and the judge trains
    model_dir = resolve_model(args.model, args.cache)
    meshes = load_meshes(specs)
    flush_denormals()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    add, finish = ep.write_records(args.out) if args.out else (None, None)
    ok = False
    try:
        report = ep.run(model_dir, meshes, families=families, classes=classes,
                        per_class=args.subjects_per_class, seeds=seeds, quality=args.quality,
                        num_traj=args.num_traj, judge_clips=args.judge_clips,
                        judge_steps=args.judge_steps, keep_shape=args.keep_shape,
                        shape_study=args.keep_shape_study, subject_reading=args.subject_reading,
                        on_record=add, log=ep.log_stderr)
        ok = True
    finally:
        if finish:
            finish(ok)
    print(ep.format_report(report))
    if args.out:
        print(f"wrote {len(report.records) + len(report.checks)} take records to {args.out}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    flush_denormals()
    from .bench import run_bench

    sizes = [int(s) for s in args.sizes.split(",") if s]
    run_bench(sizes, device=args.device, dense_up_to=args.dense_up_to, num_traj=args.num_traj,
              threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m backend eval`: how well a model reconstructs and follows text, on held-out data.

Per held-out clip (unseen mesh, caption from a held-out paraphrase) we report
* VAE reconstruction error: mean per-vertex L2 as % of the frame-0 bounding-box diagonal;
* text-motion alignment: a motion-family classifier, trained on the ground-truth clips, labels
  the generated clip; top-1 accuracy per family, beside two baselines (no motion; the motion of
  a random family);
* generated / ground-truth motion amplitude and jerk (third time difference);
* edge-length distortion of the generated clip (mean |l_t / l_0 - 1|).
Every metric is computed in the mesh's normalised frame (frame-0 box centre and size).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import mesh as meshprep
from .model_folder import load_model
from .errors import UserError
from .pipeline import animate, default_num_tokens


# ----------------------------------------------------------------------------- motion metrics (pure numpy)

def bbox_diagonal(points: np.ndarray) -> float:
    return float(np.linalg.norm(points.max(0) - points.min(0)))


def amplitude(frames: np.ndarray) -> float:
    """Mean distance of the vertices from their frame-0 positions over all frames."""
    return float(np.linalg.norm(frames - frames[:1], axis=-1).mean())


def jerk(frames: np.ndarray) -> float:
    """Mean magnitude of the third time difference of vertex positions."""
    return float(np.linalg.norm(np.diff(frames, n=3, axis=0), axis=-1).mean())


def edge_distortion(frames: np.ndarray, edges: np.ndarray) -> float:
    """Mean |l_t / l_0 - 1| over undirected edges and frames."""
    if len(edges) == 0:
        return 0.0
    e = edges[edges[:, 0] < edges[:, 1]]
    lengths = np.linalg.norm(frames[:, e[:, 0]] - frames[:, e[:, 1]], axis=-1)
    rest = np.maximum(lengths[:1], 1e-12)
    return float(np.abs(lengths / rest - 1).mean())


def normalised(frames: np.ndarray, center, denom) -> np.ndarray:
    return ((frames - center) / denom).astype(np.float32)


# ----------------------------------------------------------------------------- the family classifier

class MotionClassifier(nn.Module):
    """A small PointNet over vertices: (rest xyz, per-frame offsets) -> family logits.

    Mean and max pooling make it independent of vertex count and order, so it reads any mesh.
    """

    def __init__(self, frames: int, families: int, width: int = 128):
        super().__init__()
        self.point = nn.Sequential(nn.Linear(3 + 3 * frames, width), nn.GELU(), nn.Linear(width, width), nn.GELU())
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, families))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips: (B, T, P, 3) normalised, P points sampled from each mesh."""
        offsets = (clips - clips[:, :1]).permute(0, 2, 1, 3).flatten(2)
        h = self.point(torch.cat([clips[:, 0], offsets * 10.0], dim=-1))  # (B, P, width)
        return self.head(torch.cat([h.mean(1), h.max(1).values], dim=-1))


def subsample(clips, rng: np.random.Generator, n: int = 512) -> torch.Tensor:
    """The same number of vertices from every clip (without replacement when there are enough)."""
    out = []
    for clip in clips:
        rows = rng.choice(clip.shape[1], n, replace=clip.shape[1] < n)
        out.append(clip[:, np.sort(rows)])
    return torch.from_numpy(np.ascontiguousarray(np.stack(out), dtype=np.float32))


def train_classifier(clips, labels, families: int, seed: int = 0, steps: int = 300) -> MotionClassifier:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MotionClassifier(clips[0].shape[0], families)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    y = torch.tensor(labels)
    for step in range(steps):
        pick = rng.choice(len(clips), min(32, len(clips)), replace=False)
        batch = subsample([clips[i] for i in pick], rng, 128)
        loss = nn.functional.cross_entropy(model(batch), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def classify(model: MotionClassifier, clips, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([int(model(subsample([c], rng)).argmax()) for c in clips])


# ----------------------------------------------------------------------------- the evaluation

WORDINGS = ("dataset", "training")


def prompt_for(sample, wording: str, rng: np.random.Generator) -> str:
    """The prompt a clip is generated from.

    "dataset": one of the clip's own captions (held-out paraphrases in an eval split).
    "training": the same motion worded by a training template of the procedural set, a
    diagnostic: the gap between the two accuracies is what unseen wording costs the model.
    """
    if wording == "dataset":
        return sample.captions[int(rng.integers(len(sample.captions)))]
    if wording != "training":
        raise UserError(f"wording={wording!r}; use one of {', '.join(WORDINGS)}.")
    from .data.captions import render, train_templates

    meta = sample.meta or {}
    if not sample.family or "noun" not in meta or "params" not in meta:
        raise UserError(f"{sample.source}: training wording needs procedural clips (family, noun and "
                        "motion parameters in their meta); evaluate other data with wording 'dataset'.")
    templates = train_templates(sample.family)
    return render(sample.family, templates[int(rng.integers(len(templates)))], meta["noun"], meta["params"], rng)


@dataclass
class Report:
    model: str
    n_samples: int
    recon_mean_pct: float
    recon_p99_pct: float
    accuracy: float
    accuracy_no_motion: float
    accuracy_random_family: float
    judge_accuracy: float
    judge_pool: int  # ground-truth clips the judge learned from (0: cross-validated on the evaluated ones)
    amplitude_ratio: float
    jerk_ratio: float
    edge_distortion_pct: float
    edge_distortion_gt_pct: float
    # The same over the clips whose ground truth keeps its edge lengths (< 1 %: rigid and
    # articulated motions), where any stretching is the model's artefact and not the motion.
    edge_distortion_rigid_pct: float
    rigid_clips: int
    per_family: dict = field(default_factory=dict)
    wording: str = "dataset"
    skip: int = 0  # clips of the folder before the evaluated ones
    quality: str = "reference"  # the sampling preset the clips were generated with
    # One record per evaluated clip (its place in the folder, family, prompt, what the judge took
    # the generated motion for, amplitude over the ground truth's), for finding where misses come from.
    clips: list = field(default_factory=list)


def evaluate(model_dir: Path, data_dir: Path, limit: int | None = None, seed: int = 0,
             steps: int | None = None, classifier_steps: int = 3000, guidance: float | None = None,
             wording: str = "dataset", skip: int = 0, keep_shape: str | None = None,
             quality: str = "reference") -> Report:
    """`skip` evaluates the clips after the first `skip` ones: a validation slice, disjoint from
    the reported one, on which to choose between runs or settings. `quality` defaults to the
    model's own sampling schedule, the one its reported figures were measured with; "standard"
    measures what a click gives by default."""
    from .data.shards import iter_dataset

    model = load_model(model_dir)
    everything = list(iter_dataset(Path(data_dir)))
    if skip < 0 or skip >= len(everything):
        raise UserError(f"--skip {skip} leaves no clips: {data_dir} holds {len(everything)}.")
    end = skip + limit if limit else len(everything)
    samples = everything[skip:end]
    # The judge learns from ground-truth clips of *other* held-out samples when the folder has
    # more than we evaluate (and they cover every evaluated family), so it never saw the meshes
    # it labels; otherwise it is trained on the evaluated clips and rated by cross-validation.
    judge_pool = [s for s in everything[:skip] + everything[end:] if s.family]
    families = sorted({s.family for s in samples if s.family})
    label = {f: i for i, f in enumerate(families)}
    rng = np.random.default_rng(seed)

    gt, gen, recon_errors, edges_all, prompts = [], [], [], [], []
    for i, s in enumerate(samples):
        center, denom = meshprep.normalize(s.frames[0].astype(np.float32))
        gt_n = normalised(s.frames, center, denom)
        recon_errors.append(reconstruction_error(model, gt_n, s.faces, seed))
        caption = prompt_for(s, wording, rng)
        prompts.append(caption)
        result = animate(s.frames[0], s.faces, caption, model=model, seed=seed + i, steps=steps, guidance=guidance,
                         keep_shape=keep_shape, quality=quality)
        gt.append(gt_n)
        gen.append(normalised(result.frames, center, denom))
        edges_all.append(meshprep.adjacency_edges(np.asarray(s.faces).reshape(-1, 3), s.frames.shape[1]))
        print(f"[eval] {i + 1}/{len(samples)} {s.family}: '{caption}'", file=sys.stderr, flush=True)

    labels = np.array([label[s.family] for s in samples])
    pool = [s for s in judge_pool if s.family in label]
    if {s.family for s in pool} == set(families):  # the pool teaches every evaluated family
        pool_clips = [normalised(s.frames, *meshprep.normalize(s.frames[0].astype(np.float32))) for s in pool]
        classifier = train_classifier(pool_clips, np.array([label[s.family] for s in pool]), len(families),
                                      seed, classifier_steps)
        judge_accuracy = float((classify(classifier, gt, seed) == labels).mean())
        judge_pool = len(pool)
    else:
        if len(samples) < 2:
            raise UserError(f"{data_dir}: one clip cannot rate its own judge; evaluate at least 2 (--limit), "
                            "or a folder that also holds other clips of the evaluated families.")
        judge_pool = 0
        classifier = train_classifier(gt, labels, len(families), seed, classifier_steps)
        judge_accuracy = cross_validated_accuracy(gt, labels, len(families), seed, classifier_steps)
    predicted = classify(classifier, gen, seed)
    static = [np.repeat(g[:1], g.shape[0], axis=0) for g in gt]
    random_other = [gt[int(rng.integers(len(gt)))] for _ in gt]
    errors = np.concatenate(recon_errors)
    gen_distortion = np.array([edge_distortion(g, e) for g, e in zip(gen, edges_all)])
    gt_distortion = np.array([edge_distortion(g, e) for g, e in zip(gt, edges_all)])
    rigid = gt_distortion < 0.01
    per_family = {}
    for f in families:
        idx = labels == label[f]
        wrong = Counter(families[p] for p in predicted[idx] if p != label[f])
        per_family[f] = {"n": int(idx.sum()), "accuracy": float((predicted[idx] == labels[idx]).mean()),
                         "amplitude_ratio": _ratio([amplitude(gen[i]) for i in np.where(idx)[0]],
                                                   [amplitude(gt[i]) for i in np.where(idx)[0]]),
                         # what the judge took the misses for: where wording or decoding goes wrong
                         "mistaken_for": dict(wrong.most_common())}
    return Report(
        model=str(model_dir), n_samples=len(samples),
        recon_mean_pct=float(errors.mean()), recon_p99_pct=float(np.percentile(errors, 99)),
        accuracy=float((predicted == labels).mean()),
        accuracy_no_motion=float((classify(classifier, static, seed) == labels).mean()),
        accuracy_random_family=float((classify(classifier, random_other, seed) == labels).mean()),
        judge_accuracy=judge_accuracy, judge_pool=judge_pool,
        amplitude_ratio=_ratio([amplitude(g) for g in gen], [amplitude(g) for g in gt]),
        jerk_ratio=_ratio([jerk(g) for g in gen], [jerk(g) for g in gt]),
        edge_distortion_pct=100 * float(gen_distortion.mean()),
        edge_distortion_gt_pct=100 * float(gt_distortion.mean()),
        edge_distortion_rigid_pct=100 * float(gen_distortion[rigid].mean()) if rigid.any() else float("nan"),
        rigid_clips=int(rigid.sum()),
        per_family=per_family, wording=wording, skip=skip, quality=quality,
        clips=[{"index": skip + i, "family": s.family, "prompt": prompt, "judged_as": families[int(p)],
                "amplitude_ratio": _ratio([amplitude(g_gen)], [amplitude(g_gt)])}
               for i, (s, prompt, p, g_gen, g_gt) in enumerate(zip(samples, prompts, predicted, gen, gt))])


def _ratio(a, b) -> float:
    return float(np.mean(a) / max(np.mean(b), 1e-12))


def reconstruction_error(model, frames_n: np.ndarray, faces, seed: int) -> np.ndarray:
    """Per-vertex, per-frame L2 error of encode -> decode, in % of the frame-0 box diagonal."""
    return percent_error(reconstruct(model, frames_n, faces, seed), frames_n)


def percent_error(recon: np.ndarray, frames_n: np.ndarray) -> np.ndarray:
    """Per-vertex, per-frame L2 distance (flattened), in % of the frame-0 box diagonal."""
    err = np.linalg.norm(recon - frames_n, axis=-1)
    return 100 * err.ravel() / bbox_diagonal(frames_n[0])


@torch.no_grad()
def reconstruct(model, frames_n: np.ndarray, faces, seed: int) -> np.ndarray:
    """encode -> decode (posterior mean) of a normalised clip (T, N, 3), as inference would."""
    from .models.farthest_point_sampling import sample_token_indices

    vae = model.vae
    rest = torch.from_numpy(frames_n[0])[None]
    edges = torch.from_numpy(meshprep.adjacency_edges(np.asarray(faces).reshape(-1, 3), frames_n.shape[1]))
    feats = vae.vertex_features(rest, edges)
    n = frames_n.shape[1]
    k = default_num_tokens(n, vae.config.num_traj)
    idx = sample_token_indices(vae.sampling_space(rest, feats)[0], n, k, torch.Generator().manual_seed(seed),
                               model.config.compat.replace_index_zero)
    enc = vae.encode(torch.from_numpy(frames_n)[None], edges, idx[None], pc0_embed=feats)
    return vae.decode(enc.mode(), feats, rest)[0].numpy()


def cross_validated_accuracy(clips, labels, families: int, seed: int, steps: int = 300, folds: int = 4) -> float:
    """How reliable the judge is: its accuracy on ground-truth clips it did not train on."""
    order = np.random.default_rng(seed).permutation(len(clips))
    folds = min(folds, len(clips))  # every fold tests at least one clip and trains on the others
    correct = 0
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        clf = train_classifier([clips[i] for i in train], labels[train], families, seed, steps)
        correct += int((classify(clf, [clips[i] for i in test], seed) == labels[test]).sum())
    return correct / len(clips)


def format_report(r: Report) -> str:
    judge = (f"judge learned from {r.judge_pool} other held-out clips" if r.judge_pool
             else "judge cross-validated on the evaluated clips")
    wording = ("prompts: the clips' own captions" if r.wording == "dataset"
               else "prompts: training-template wording (diagnostic, not the held-out test)")
    which = f" (clips {r.skip + 1}-{r.skip + r.n_samples} of the folder)" if r.skip else ""
    lines = [f"model: {r.model}   held-out samples: {r.n_samples}{which}   {judge}",
             f"{wording}   sampling: {r.quality}", "",
             "| metric | value | target |", "|---|---:|---|",
             f"| VAE reconstruction error, mean (% of bbox diagonal) | {r.recon_mean_pct:.3f} | <= 1 |",
             f"| VAE reconstruction error, 99th percentile (%) | {r.recon_p99_pct:.3f} | |",
             f"| text-motion top-1 accuracy | {100 * r.accuracy:.1f}% | >= 80% |",
             f"| baseline: no motion | {100 * r.accuracy_no_motion:.1f}% | |",
             f"| baseline: a random family's motion | {100 * r.accuracy_random_family:.1f}% | |",
             f"| judge accuracy on the evaluated clips' ground truth (unseen by the judge) | {100 * r.judge_accuracy:.1f}% | |",
             f"| motion amplitude, generated / ground truth | {r.amplitude_ratio:.2f}x | 0.5x - 2x |",
             f"| jerk, generated / ground truth | {r.jerk_ratio:.2f}x | <= 1.5x |",
             f"| edge-length distortion (generated) | {r.edge_distortion_pct:.2f}% | <= 3% |",
             f"| edge-length distortion (ground truth) | {r.edge_distortion_gt_pct:.2f}% | |",
             f"| edge-length distortion (generated), {r.rigid_clips} clips whose ground truth keeps edge lengths"
             f" | {r.edge_distortion_rigid_pct:.2f}% | |",
             "", "| family | n | top-1 | amplitude ratio | misses judged as |", "|---|---:|---:|---:|---|"]
    for f, row in r.per_family.items():
        misses = ", ".join(f"{g} {k}" for g, k in row.get("mistaken_for", {}).items())
        lines.append(f"| {f} | {row['n']} | {100 * row['accuracy']:.0f}% | {row['amplitude_ratio']:.2f}x | {misses} |")
    return "\n".join(lines)

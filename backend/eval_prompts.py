"""`python -m backend eval-prompts`: does the model move meshes it never saw, named by words it
never saw?

Every whole-body motion family is asked for in the project's own training wording (the family's
first training template, its plain categories), with the subject slot filled from five classes:
nouns of the training captions, nouns outside them, nouns with a part word ("monkey head"), no
noun at all, and pronouns. Every take of a (mesh, seed) pair starts from the same noise and token
choice, so within a family the subject is the only thing that changes between takes.

Per take we keep
* what the motion-family judge of `evaluate` (trained here on ground-truth clips of the
  generator's held-out meshes, whole-body families only) takes the motion for;
* its peak amplitude: the largest, over frames, of the vertices' mean distance from frame 0, as
  a share of the frame-0 bounding-box diagonal (3% is where a take starts to read as moving);
* its edge-length distortion (`evaluate.edge_distortion`), beside that of the family's ground
  truth on the same mesh: growing, squashing and melting change edge lengths by design, the
  rigid families do not.
The judge is also shown each family's ground-truth motion on every measured mesh, so a low top-1
on a mesh can be told apart from a judge that cannot read that mesh.

With `shape_study` every take is made with Keep Shape off and then measured twice more: projected
(Keep Shape on) and as `auto` would leave it at each threshold of `SHAPE_THRESHOLDS`, so one run
shows what the projection buys and costs per family, and where `auto`'s threshold belongs.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError

MIN_MOVING = 0.03  # peak share of the diagonal from which a take counts as moving
TEMPLATE = 0       # the first training template of every family: its plainest wording
# jump's first direction is "up"; "forward" is how issue 20 asked, and it travels
PROMPT_DIRECTION = {"jump": "forward"}
JUDGE_DATA_SEED = 2  # the stream the model card's held-out set was written with
JUDGE_MAX_VERTICES = 800
JUDGE_VALIDATION_PER_FAMILY = 6

# class id -> (what the report calls it, subjects in the order --subjects-per-class takes them).
# The first ones of each class span its kinds, so a run with two per class still has variety.
SUBJECT_CLASSES: dict[str, tuple[str, tuple[str, ...]]] = {
    # nouns the procedural generator gives its meshes, so every one is in the training captions
    "caption": ("caption noun", ("ball", "dog", "cube", "bird", "tree", "robot")),
    # objects, furniture, vehicles, statues, food: none of their words is in the training captions
    "unseen": ("unseen noun", ("statue", "car", "chair", "apple", "teapot", "sofa", "truck",
                               "banana", "lamp", "vase")),
    "part": ("noun + part word", ("monkey head", "dragon tail", "robot arm", "bunny ear",
                                  "duck wing", "horse leg")),
    "none": ("no noun", ("",)),
    "pronoun": ("pronoun", ("it", "this", "that", "something")),
}
# the specific check of issue 20, run on Suzanne with two levels of Subdivision Surface
CHECK_PROMPTS = ("the monkey head jumps", "a ball jumps", "it jumps")
CHECK_MESH = ("suzanne", 2)
# thresholds of Keep Shape auto (rigidity.AUTO_CHANGE) that a shape study compares
SHAPE_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, float("inf"))


def whole_body_families() -> list[str]:
    from .data.motions import FAMILY_SPECS

    return [name for name, spec in FAMILY_SPECS.items() if not spec.articulated]


@dataclass(frozen=True)
class Subject:
    cls: str
    text: str

    @property
    def phrase(self) -> str:
        """How the subject opens the prompt: nouns take their article, pronouns stand alone."""
        if self.cls in ("none", "pronoun"):
            return self.text
        from .data.captions import article

        return f"{article(self.text)} {self.text}"


def subjects_for(classes, per_class: int) -> list[Subject]:
    return [Subject(c, text) for c in classes for text in SUBJECT_CLASSES[c][1][:per_class]]


class _FirstPhrase:
    """Stands in for the random generator of `captions.render`: the first phrase of every slot,
    which for the plain categories is the plain one ("" for normal speed)."""

    def integers(self, high):
        return 0


_MARK = "subjectmark"


def predicate(family: str) -> str:
    """The family's training wording without its subject: "jumps forward", "sways from side to
    side"."""
    from .data.captions import article, render, templates_of
    from .data.motions import FAMILY_SPECS

    spec = FAMILY_SPECS[family]
    if not templates_of(family)[TEMPLATE].startswith("{a_noun} "):
        raise ValueError(f"template {TEMPLATE} of {family} does not open with its subject")
    params = {"speed": "normal", "amplitude": "normal",
              "direction": PROMPT_DIRECTION.get(family, spec.directions[0])}
    text = render(family, TEMPLATE, _MARK, params, _FirstPhrase())
    return text[len(f"{article(_MARK)} {_MARK} "):]


def prompt_for(family: str, subject: Subject) -> str:
    return f"{subject.phrase} {predicate(family)}".strip()


def ground_truth(family: str, vertices: np.ndarray, frames: int = 16) -> np.ndarray:
    """The family's motion at its plain categories (the prompt's direction) on any mesh."""
    from .data.creatures import ProcMesh
    from .data.motions import FAMILY_SPECS, MotionParams

    spec = FAMILY_SPECS[family]
    direction = PROMPT_DIRECTION.get(family, spec.directions[0])
    params = MotionParams("normal", "normal", direction, float(spec.speeds["normal"]),
                          float(spec.amplitudes["normal"]))
    mesh = ProcMesh(kind="measured", shape="measured", nouns=(), vertices=np.asarray(vertices, np.float64),
                    faces=np.zeros((0, 3), np.int64))
    return mesh.vertices[None] + spec.fn(mesh, params, np.linspace(0.0, 1.0, frames))


# ----------------------------------------------------------------------------- metrics of one take

def take_metrics(frames: np.ndarray, edges: np.ndarray) -> dict:
    """Peak and mean amplitude (% of the frame-0 diagonal) and edge distortion (%) of a clip."""
    from .evaluate import amplitude, bbox_diagonal, edge_distortion

    frames = np.asarray(frames, np.float64)
    diag = max(bbox_diagonal(frames[0]), 1e-12)
    moved = np.linalg.norm(frames - frames[:1], axis=-1)
    return {"peak_pct": 100 * float(moved.mean(axis=1).max()) / diag,
            "peak_vertex_pct": 100 * float(moved.max()) / diag,
            "mean_pct": 100 * amplitude(frames) / diag,
            "edge_distortion_pct": 100 * edge_distortion(frames, edges)}


def judge_view(frames: np.ndarray) -> np.ndarray:
    """A clip as the judge reads it: in its frame-0 normalised frame (as `evaluate` does)."""
    from . import mesh as meshprep
    from .evaluate import normalised

    return normalised(frames, *meshprep.normalize(np.asarray(frames[0], np.float32)))


# ----------------------------------------------------------------------------- the judge

@dataclass
class Judge:
    families: list[str]
    classifier: object
    pool: int
    validation_accuracy: float
    validation: int
    seed: int = 0

    def label(self, frames: np.ndarray) -> str:
        from .evaluate import classify

        return self.families[int(classify(self.classifier, [judge_view(frames)], self.seed)[0])]


def train_judge(families, clips_per_family: int, steps: int, seed: int = 0, log=None) -> Judge:
    """`evaluate`'s judge, taught the whole-body families from ground-truth clips of the
    generator's held-out split (the clips `make-dataset --split eval` writes, these families
    only), and rated on further such clips it did not learn from."""
    from .data.procedural import sample_at
    from .evaluate import classify, train_classifier

    label = {f: i for i, f in enumerate(families)}
    k = len(families)

    def clips(start, stop):
        samples = [sample_at(i, JUDGE_DATA_SEED, "eval", families, max_vertices=JUDGE_MAX_VERTICES)
                   for i in range(start, stop)]
        return [judge_view(s.frames) for s in samples], np.array([label[s.family] for s in samples])

    train_x, train_y = clips(0, k * clips_per_family)
    (log or (lambda m: None))(f"judge: {len(train_x)} ground-truth clips, {steps} steps")
    classifier = train_classifier(train_x, train_y, k, seed, steps)
    end = k * (clips_per_family + JUDGE_VALIDATION_PER_FAMILY)
    val_x, val_y = clips(k * clips_per_family, end)
    accuracy = float((classify(classifier, val_x, seed) == val_y).mean())
    return Judge(list(families), classifier, len(train_x), accuracy, len(val_x), seed)


# ----------------------------------------------------------------------------- the run

@dataclass
class PromptReport:
    model: str
    quality: str
    seeds: list[int]
    classes: list[str]
    families: list[str]
    meshes: list[dict]               # spec, name, vertices, source
    judge: dict
    records: list[dict] = field(default_factory=list)   # one per take of the grid
    checks: list[dict] = field(default_factory=list)    # the Suzanne check's takes
    vocabulary_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    subject_reading: str = "literal"  # the model's text.subject_reading, or the run's override


def check_options(families, classes, per_class: int, seeds) -> tuple[list[str], list[str]]:
    """The families and classes by name, or a UserError naming what is wrong."""
    from aam_seam.limits import MAX_SEED

    whole = whole_body_families()
    families = list(dict.fromkeys(families or whole))
    bad = [f for f in families if f not in whole]
    if bad:
        raise UserError(f"--families: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not a "
                        f"whole-body family; choose from {', '.join(whole)}.")
    classes = list(dict.fromkeys(classes or SUBJECT_CLASSES))
    bad = [c for c in classes if c not in SUBJECT_CLASSES]
    if bad:
        raise UserError(f"--classes: unknown subject class {', '.join(bad)}; choose from "
                        f"{', '.join(SUBJECT_CLASSES)}.")
    if per_class < 1:
        raise UserError(f"--subjects-per-class must be at least 1 (got {per_class}).")
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
        raise UserError(f"--seeds must be whole numbers from 0 to {MAX_SEED} (got {seeds}).")
    return families, classes


def vocabulary_notes(vocabulary, subjects) -> list[str]:
    """Subjects whose words contradict their class for this model (another model's captions
    may hold words the embedded model's do not)."""
    if vocabulary is None:
        return ["the model has no vocabulary.json: the noun classes follow the embedded model's captions"]
    notes = []
    for s in subjects:
        unknown = vocabulary.unknown(s.text)
        if s.cls == "caption" and unknown:
            notes.append(f"caption noun '{s.text}': this model's captions lack {', '.join(unknown)}")
        if s.cls == "unseen" and len(unknown) < len(s.text.split()):
            notes.append(f"unseen noun '{s.text}' is in this model's captions")
    return notes


def run(model_dir: Path, meshes, *, families=None, classes=None, per_class: int = 2, seeds=(1,),
        quality: str = "standard", num_traj: int | None = None, judge_clips: int = 40,
        judge_steps: int = 3000, keep_shape: str | None = None, shape_study: bool = False,
        subject_reading: str | None = None, on_record=None, log=None) -> PromptReport:
    """Every (mesh, family, subject, seed) take. `meshes`: reference_meshes.NamedMesh list;
    `on_record(record)` sees each take as it is made (the JSON lines file). `subject_reading`
    overrides the model's (`literal` measures the flow alone on part-word subjects)."""
    from . import mesh as meshprep
    from . import rigidity
    from .model_folder import load_model
    from .pipeline import animate
    from .subject_reading import read_prompt

    log = log or (lambda message: None)
    families, classes = check_options(families, classes, per_class, list(seeds))
    subjects = subjects_for(classes, per_class)
    clock = time.perf_counter()
    model = load_model(Path(model_dir))
    if subject_reading is not None:
        model.config.text.subject_reading = subject_reading
    reading = model.config.text.subject_reading
    judge = train_judge(whole_body_families(), judge_clips, judge_steps, log=log)
    log(f"judge: {100 * judge.validation_accuracy:.1f}% on {judge.validation} held-out clips")
    report = PromptReport(str(model_dir), quality, list(seeds), classes, families, [], {
        "families": len(judge.families), "pool": judge.pool, "steps": judge_steps,
        "validation": judge.validation, "validation_accuracy": judge.validation_accuracy,
        "on_ground_truth": {}}, vocabulary_notes=vocabulary_notes(model.vocabulary, subjects),
        subject_reading=reading)

    def take(mesh, edges, prompt, seed):
        start = time.perf_counter()
        result = animate(mesh.vertices, mesh.faces, prompt, model=model, seed=seed, quality=quality,
                         num_traj=num_traj, keep_shape="off" if shape_study else keep_shape)
        frames = result.frames.astype(np.float64)
        unknown = model.vocabulary.unknown(prompt) if model.vocabulary is not None else []
        record = dict(take_metrics(frames, edges), judged_as=judge.label(frames), unknown_words=unknown,
                      seconds=time.perf_counter() - start,
                      keep_shape=result.keep_shape, read_as=read_prompt(prompt, reading).prompt)
        if shape_study:
            kept = rigidity.keep_shape(frames, edges, "on")
            projected = kept.frames.numpy().astype(np.float64)
            on = take_metrics(projected, edges)
            record.update(shape_change=kept.change, on_peak_pct=on["peak_pct"],
                          on_edge_distortion_pct=on["edge_distortion_pct"],
                          on_judged_as=judge.label(projected))
        return record

    total = len(meshes) * len(families) * len(subjects) * len(seeds)
    done = 0
    for mesh in meshes:
        edges = meshprep.adjacency_edges(meshprep.triangulate(mesh.faces), len(mesh.vertices))
        truth = {f: ground_truth(f, mesh.vertices) for f in families}
        truth_metrics = {f: take_metrics(clip, edges) for f, clip in truth.items()}
        read = [judge.label(clip) == f for f, clip in truth.items()]
        report.judge["on_ground_truth"][mesh.name] = float(np.mean(read))
        report.meshes.append({"spec": mesh.spec, "name": mesh.name, "vertices": len(mesh.vertices),
                              "source": mesh.source})
        for seed in seeds:
            for family in families:
                for subject in subjects:
                    prompt = prompt_for(family, subject)
                    record = {"mesh": mesh.name, "spec": mesh.spec, "vertices": len(mesh.vertices),
                              "family": family, "class": subject.cls, "subject": subject.text,
                              "prompt": prompt, "seed": seed, "quality": quality,
                              **take(mesh, edges, prompt, seed),
                              "gt_peak_pct": truth_metrics[family]["peak_pct"],
                              "gt_edge_distortion_pct": truth_metrics[family]["edge_distortion_pct"]}
                    record["correct"] = record["judged_as"] == family
                    report.records.append(record)
                    if on_record:
                        on_record(record)
                    done += 1
                    log(f"[eval-prompts] {done}/{total} {mesh.name} '{prompt}' seed {seed}: "
                        f"{record['peak_pct']:.1f}% of the diagonal, judged {record['judged_as']}")
            if (mesh.spec.split(":")[0].lower(), mesh.info.get("level")) == CHECK_MESH:
                for prompt in CHECK_PROMPTS:
                    check = {"mesh": mesh.name, "spec": mesh.spec, "vertices": len(mesh.vertices),
                             "family": "jump", "class": "check", "subject": "", "prompt": prompt,
                             "seed": seed, "quality": quality, **take(mesh, edges, prompt, seed)}
                    check["correct"] = check["judged_as"] == "jump"
                    report.checks.append(check)
                    if on_record:
                        on_record(check)
                    log(f"[eval-prompts] check {mesh.name} '{prompt}' seed {seed}: "
                        f"{check['peak_pct']:.1f}% of the diagonal, judged {check['judged_as']}")
    report.seconds = time.perf_counter() - clock
    return report


# ----------------------------------------------------------------------------- summaries

def summary(records) -> dict:
    """top-1 %, share of takes moving >= MIN_MOVING (%), median peak (% of the diagonal), median
    of each take's peak over its family's ground-truth peak on the same mesh (some families move
    less than 3% by design: shake, pulse, wobble), mean edge distortion (%) of the generated
    takes and of their families' ground truth."""
    if not records:
        return {"takes": 0}
    peaks = np.array([r["peak_pct"] for r in records])
    return {"takes": len(records),
            "top1_pct": 100 * float(np.mean([r["correct"] for r in records])),
            "moving_pct": 100 * float(np.mean(peaks >= 100 * MIN_MOVING)),
            "median_peak_pct": float(np.median(peaks)),
            "peak_ratio": float(np.median([r["peak_pct"] / max(r.get("gt_peak_pct", np.nan), 1e-9)
                                           for r in records])),
            "edge_distortion_pct": float(np.mean([r["edge_distortion_pct"] for r in records])),
            "gt_edge_distortion_pct": float(np.mean([r.get("gt_edge_distortion_pct", np.nan)
                                                     for r in records]))}


def grouped(records, *keys) -> dict:
    groups: dict = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]], []).append(r)
    return {k: summary(v) for k, v in groups.items()}


def tables(report: PromptReport) -> dict:
    """Everything the printed report shows, as numbers (the test reads this)."""
    from .data.motions import FAMILY_SPECS

    rigid = [r for r in report.records if FAMILY_SPECS[r["family"]].rigid]
    return {"overall": summary(report.records),
            "by_class": {c: summary([r for r in report.records if r["class"] == c]) for c in report.classes},
            "by_class_rigid": {c: summary([r for r in rigid if r["class"] == c]) for c in report.classes},
            "by_family_class": grouped(report.records, "family", "class"),
            "by_family": grouped(report.records, "family"),
            "by_mesh_class": grouped(report.records, "mesh", "class"),
            "by_mesh": grouped(report.records, "mesh"),
            "by_subject": grouped(report.records, "class", "subject"),
            "misses": {f: dict(Counter(r["judged_as"] for r in report.records
                                       if r["family"] == f and not r["correct"]).most_common(3))
                       for f in report.families}}


def shaped_view(record: dict, mode: str, threshold: float | None = None) -> dict:
    """A shape-study take as Keep Shape `mode` leaves it: distortion, peak, judged family."""
    from . import rigidity

    limit = rigidity.AUTO_CHANGE if threshold is None else threshold
    projected = mode == "on" or (mode == "auto" and record["shape_change"] <= limit)
    prefix = "on_" if projected else ""
    return {"edge_distortion_pct": record[prefix + "edge_distortion_pct"], "peak_pct": record[prefix + "peak_pct"],
            "correct": record[prefix + "judged_as"] == record["family"], "projected": projected}


def shape_study(records) -> dict:
    """Per family and per `auto` threshold: edge distortion, motion kept and top-1 under Keep
    Shape off, on and auto (the records of a `shape_study` run)."""
    from .data.motions import FAMILY_SPECS

    studied = [r for r in records if "shape_change" in r]
    if not studied:
        return {}

    def measure(group, mode, threshold=None):
        views = [shaped_view(r, mode, threshold) for r in group]
        return {"edge_distortion_pct": float(np.mean([v["edge_distortion_pct"] for v in views])),
                "motion_kept": float(np.median([v["peak_pct"] / max(r["peak_pct"], 1e-9)
                                                for v, r in zip(views, group)])),
                "top1_pct": 100 * float(np.mean([v["correct"] for v in views])),
                "projected_pct": 100 * float(np.mean([v["projected"] for v in views]))}

    families: dict = {}
    for r in studied:
        families.setdefault(r["family"], []).append(r)
    rigid = [r for r in studied if FAMILY_SPECS[r["family"]].rigid]
    deforming = [r for r in studied if not FAMILY_SPECS[r["family"]].rigid]
    return {"by_family": {f: {"rigid": FAMILY_SPECS[f].rigid,
                              "change": float(np.median([r["shape_change"] for r in group])),
                              **{m: measure(group, m) for m in ("off", "on", "auto")}}
                          for f, group in families.items()},
            "thresholds": {th: {"rigid": measure(rigid, "auto", th) if rigid else {},
                                "deforming": measure(deforming, "auto", th) if deforming else {},
                                "all": measure(studied, "auto", th)}
                           for th in SHAPE_THRESHOLDS}}


def _pct(x: float, digits: int = 0) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}%"


def format_report(report: PromptReport) -> str:
    t = tables(report)
    names = {c: SUBJECT_CLASSES[c][0] for c in report.classes}
    seeds = ", ".join(map(str, report.seeds))
    j = report.judge
    lines = [f"model: {report.model}   quality: {report.quality}   subject reading: "
             f"{report.subject_reading}   seeds: {seeds}   "
             f"{len(report.records)} takes in {report.seconds / 60:.1f} min",
             f"judge: {j['families']} whole-body families, learned from {j['pool']} ground-truth clips of "
             f"held-out meshes ({j['steps']} steps); {_pct(100 * j['validation_accuracy'], 1)} on "
             f"{j['validation']} further ones",
             "prompts: the family's first training template, plain categories, the subject in front "
             f"(e.g. '{prompt_for(report.families[0], Subject('caption', 'ball'))}')", "",
             "| mesh | vertices | judge on the families' ground truth on this mesh | source |",
             "|---|---:|---:|---|"]
    for m in report.meshes:
        lines.append(f"| {m['name']} | {m['vertices']:,} | {_pct(100 * j['on_ground_truth'][m['name']])} "
                     f"| {m['source']} |")
    lines += ["", f"By subject class (peak: the largest mean vertex displacement from frame 0 over the "
              f"frames, % of the diagonal; moving: peak >= {100 * MIN_MOVING:.0f}%)", "",
              "| subject class | subjects | takes | top-1 | moving | median peak | median peak / ground "
              "truth's | edge distortion | edge distortion, rigid families |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report.classes:
        s, rg = t["by_class"][c], t["by_class_rigid"][c]
        subjects = ", ".join(f"'{x}'" if x else "(none)" for x in SUBJECT_CLASSES[c][1]
                             if any(r["subject"] == x and r["class"] == c for r in report.records))
        lines.append(f"| {names[c]} | {subjects} | {s['takes']} | {_pct(s['top1_pct'])} | "
                     f"{_pct(s['moving_pct'])} | {_pct(s['median_peak_pct'], 1)} | {s['peak_ratio']:.2f}x | "
                     f"{_pct(s['edge_distortion_pct'], 2)} | {_pct(rg.get('edge_distortion_pct'), 2)} |")
    o = t["overall"]
    lines.append(f"| **all** | | {o['takes']} | {_pct(o['top1_pct'])} | {_pct(o['moving_pct'])} | "
                 f"{_pct(o['median_peak_pct'], 1)} | {o['peak_ratio']:.2f}x | "
                 f"{_pct(o['edge_distortion_pct'], 2)} | |")

    lines += ["", "Per family: top-1 / median peak per subject class; ground truth: the family's own "
              "motion on the same meshes (median peak; mean edge distortion, generated / ground truth)", "",
              "| family | " + " | ".join(names[c] for c in report.classes)
              + " | ground truth peak | edge distortion | misses judged as |",
              "|---|" + "---:|" * (len(report.classes) + 2) + "---|"]
    for f in report.families:
        cells = []
        for c in report.classes:
            s = t["by_family_class"].get((f, c), {"takes": 0})
            cells.append(f"{_pct(s['top1_pct'])} / {_pct(s['median_peak_pct'], 1)}" if s["takes"] else "-")
        ff = t["by_family"].get(f, {"takes": 0})
        gt = float(np.median([r["gt_peak_pct"] for r in report.records if r["family"] == f] or [np.nan]))
        misses = ", ".join(f"{g} {n}" for g, n in t["misses"][f].items())
        lines.append(f"| {f} | " + " | ".join(cells) + f" | {_pct(gt, 1)} | "
                     f"{_pct(ff.get('edge_distortion_pct'), 1)} / "
                     f"{_pct(ff.get('gt_edge_distortion_pct'), 1)} | {misses} |")

    lines += ["", "Per mesh: top-1 / moving per subject class", "",
              "| mesh | " + " | ".join(names[c] for c in report.classes) + " | all: median peak | "
              "edge distortion |", "|---|" + "---:|" * (len(report.classes) + 2)]
    for m in report.meshes:
        cells = []
        for c in report.classes:
            s = t["by_mesh_class"].get((m["name"], c), {"takes": 0})
            cells.append(f"{_pct(s['top1_pct'])} / {_pct(s['moving_pct'])}" if s["takes"] else "-")
        a = t["by_mesh"].get(m["name"], {"takes": 0})
        lines.append(f"| {m['name']} | " + " | ".join(cells) + f" | {_pct(a.get('median_peak_pct'), 1)} | "
                     f"{_pct(a.get('edge_distortion_pct'), 2)} |")

    lines += ["", "Per subject", "", "| subject | class | takes | top-1 | moving | median peak | "
              "median peak / ground truth's |", "|---|---|---:|---:|---:|---:|---:|"]
    for (c, subject), s in t["by_subject"].items():
        lines.append(f"| {repr(subject) if subject else '(none)'} | {names[c]} | {s['takes']} | "
                     f"{_pct(s['top1_pct'])} | {_pct(s['moving_pct'])} | {_pct(s['median_peak_pct'], 1)} | "
                     f"{s['peak_ratio']:.2f}x |")

    if report.checks:
        lines += ["", "The check of issue 20: Suzanne with two levels of Subdivision Surface", "",
                  "| prompt | seed | peak | judged as |", "|---|---:|---:|---|"]
        for r in report.checks:
            lines.append(f"| {r['prompt']} | {r['seed']} | {_pct(r['peak_pct'], 1)} | {r['judged_as']} |")
    study = shape_study(report.records)
    if study:
        from . import rigidity

        lines += ["", "Keep Shape, each take off / on / auto (auto projects a take when the projection "
                  f"moves it less than {rigidity.AUTO_CHANGE:g} of its own peak motion); motion kept: "
                  "median peak over the take's own", "",
                  "| family | rigid | median change | edge distortion off / on / auto | motion kept on / "
                  "auto | top-1 off / on / auto | auto projects |", "|---|---|---:|---|---|---|---:|"]
        for f, s in study["by_family"].items():
            off, on, auto = s["off"], s["on"], s["auto"]
            lines.append(f"| {f} | {'yes' if s['rigid'] else 'no'} | {s['change']:.3f} | "
                         f"{_pct(off['edge_distortion_pct'], 2)} / {_pct(on['edge_distortion_pct'], 2)} / "
                         f"{_pct(auto['edge_distortion_pct'], 2)} | {on['motion_kept']:.2f}x / "
                         f"{auto['motion_kept']:.2f}x | {_pct(off['top1_pct'])} / {_pct(on['top1_pct'])} / "
                         f"{_pct(auto['top1_pct'])} | {_pct(auto['projected_pct'])} |")
        lines += ["", "Keep Shape auto by threshold (inf: always on)", "",
                  "| threshold | rigid families: edge distortion, projected | deforming families: motion "
                  "kept, edge distortion, projected | top-1, all |", "|---:|---|---|---:|"]
        for th, s in study["thresholds"].items():
            rg, de = s["rigid"], s["deforming"]
            rigid_cell = (f"{_pct(rg['edge_distortion_pct'], 2)}, {_pct(rg['projected_pct'])}" if rg else "-")
            deforming_cell = (f"{de['motion_kept']:.2f}x, {_pct(de['edge_distortion_pct'], 2)}, "
                              f"{_pct(de['projected_pct'])}" if de else "-")
            lines.append(f"| {th:g} | {rigid_cell} | {deforming_cell} | {_pct(s['all']['top1_pct'])} |")
    if report.vocabulary_notes:
        lines += [""] + [f"note: {n}" for n in report.vocabulary_notes]
    return "\n".join(lines)


def write_records(path: Path):
    """A JSON-lines writer into PATH.part, and a function that puts it in place at the end (a
    cut-short run leaves its takes in the .part file and an earlier PATH untouched)."""
    part = path.with_name(path.name + ".part")
    handle = part.open("w")

    def add(record):
        handle.write(json.dumps(record) + "\n")
        handle.flush()

    def finish(ok: bool):
        handle.close()
        if ok:
            part.replace(path)

    return add, finish


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

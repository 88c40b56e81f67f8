"""How the shipped model answers whole-body prompts whose subject names a part in other forms.

The subject reading (backend/subject_reading.py) covers a name followed by a part word ("the
monkey head jumps"); the possessive ("the monkey's head jumps") and the "of" form ("the head of
the monkey jumps") go to the flow as typed, because the captions use those forms for motions of
the part. This asks for every whole-body family in each form on one mesh, with `eval-prompts`'
wording, judge and metrics, and prints top-1 and median peak per form.

    .venv/bin/python research/probes/probe_part_subject_forms.py --mesh suzanne:2 --seed 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend

from backend import eval_prompts as ep  # noqa: E402
from backend import mesh as meshprep  # noqa: E402
from backend.model_folder import load_model  # noqa: E402
from backend.model_manager import EMBEDDED_DIR  # noqa: E402
from backend.pipeline import animate  # noqa: E402
from backend.reference_meshes import load_meshes, parse_spec  # noqa: E402

FORMS = {
    "name + part (read)": "the monkey head {}",
    "possessive": "the monkey's head {}",
    "of": "the head of the monkey {}",
    "pronoun": "it {}",
}


def probe(mesh, families, seed: int = 1, quality: str = "standard", judge_clips: int = 40,
          judge_steps: int = 3000, forms=FORMS) -> dict:
    """{form: {"correct": [bool per family], "peaks": [% of the diagonal per family]}}."""
    edges = meshprep.adjacency_edges(meshprep.triangulate(mesh.faces), len(mesh.vertices))
    model = load_model(EMBEDDED_DIR)
    judge = ep.train_judge(ep.whole_body_families(), judge_clips, judge_steps)
    rows = {}
    for form, pattern in forms.items():
        rows[form] = {"correct": [], "peaks": []}
        for family in families:
            prompt = pattern.format(ep.predicate(family))
            frames = animate(mesh.vertices, mesh.faces, prompt, model=model, seed=seed, quality=quality).frames
            rows[form]["correct"].append(judge.label(frames) == family)
            rows[form]["peaks"].append(ep.take_metrics(frames, edges)["peak_pct"])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", default="suzanne:2")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quality", default="standard")
    parser.add_argument("--families", default=None, help="comma-separated (default: every whole-body one)")
    args = parser.parse_args(argv)
    mesh = load_meshes([parse_spec(args.mesh)])[0]
    families = args.families.split(",") if args.families else ep.whole_body_families()
    rows = probe(mesh, families, args.seed, args.quality)
    print(f"{mesh.name}, seed {args.seed}, quality {args.quality}, {len(families)} families\n")
    print("| subject form | example | top-1 | moving >= 3% | median peak |\n|---|---|---:|---:|---:|")
    for form, row in rows.items():
        n = len(row["peaks"])
        moving = sum(p >= 3 for p in row["peaks"])
        print(f"| {form} | {FORMS[form].format(ep.predicate('jump'))} | {100 * sum(row['correct']) / n:.0f}% | "
              f"{100 * moving / n:.0f}% | {statistics.median(row['peaks']):.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Chains, loops, masks and variations on held-out procedural clips with the embedded model.

    .venv/bin/python benchmarks/artist_controls_bench.py [--clips 3] [--seed 1]

Clips come from the procedural generator's evaluation split (meshes and caption templates the
model never trained on); every number is computed in that clip's own units and printed as
tables. Velocity change at a frame: mean over vertices of |x[t+1] - 2 x[t] + x[t-1]|.

* Chains: three segments (held-out captions A, B, A). Seam ratio: the velocity change at each
  seam over the median one inside the segments (the issue's measure; target <= 1.5), for the
  joined clip and for the same segments merely placed end to end ("raw"); "+-1" takes the
  largest change within one frame of a seam. Drift: the mesh centre's travel per segment.
* Loops: cyclic families. Seam ratio at the wrap, and amplitude (mean per-vertex range over the
  clip) of the loop over the same take unlooped (target >= 0.7).
* Masks: the upper half of each mesh free, the lower half pinned (a border through connected
  surface). Pinned motion (largest displacement of a pinned vertex, share of the diagonal; target
  < 1e-6), edge-length distortion of the edges across the border, hard and with a falloff, and
  how much of the free half's motion is kept.
* Variations: K takes in one batched pass against K single runs, timed in this run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import joins, masks, pipeline  # noqa: E402
from aam_seam.limits import LOOP_METHODS  # noqa: E402
from backend.data.procedural import sample_at  # noqa: E402
from backend.loops import in_place_range  # noqa: E402
from backend.mesh import adjacency_edges, prepare_mesh  # noqa: E402
from backend.model_folder import load_model  # noqa: E402
from backend.model_manager import EMBEDDED_DIR  # noqa: E402

CYCLIC = ["flap_wings", "walk", "wag_tail", "swim", "pulse", "sway", "shake"]
CHAINED = ["flap_wings", "walk", "jump", "spin", "sway", "nod_head", "bend", "float_up"]
MASKED = ["flap_wings", "wag_tail", "nod_head", "wave_arm"]


def diagonal(points) -> float:
    return float(np.linalg.norm(np.ptp(points, axis=0)))


def amplitude(clip) -> float:
    """Mean per-vertex range of motion over the clip."""
    return float(np.ptp(np.asarray(clip), axis=0).mean())



class Recorder:
    """Keeps the segments the pipeline joins, to compare the join with a plain concatenation."""

    def __init__(self):
        self.calls = []
        self.join = joins.join_segments

    def __call__(self, segments):
        self.calls.append([np.asarray(s) for s in segments])
        return self.join(segments)


def raw_concatenation(segments):
    clip, seams = segments[0], []
    for s in segments[1:]:
        seams.append(clip.shape[0] - 1)
        clip = np.concatenate([clip, (s - s[0] + clip[-1])[1:]])
    return clip, seams


def table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def chains(model, clips, seed):
    rows, joined_all, raw_all = [], [], []
    recorder = Recorder()
    pipeline.join_segments = recorder
    try:
        for family in CHAINED:
            for index in range(clips):
                s = sample_at(index, 0, "eval", [family])
                a, b = s.captions[0], s.captions[-1]
                recorder.calls.clear()
                result = pipeline.animate(s.frames[0], s.faces, a, model=model, seed=seed, then=[b, a])
                segments = recorder.calls[0]
                raw, seams = raw_concatenation(segments)
                joined, _ = joins.join_segments(segments)
                j, r = joins.seam_jump_ratio(joined, seams), joins.seam_jump_ratio(raw, seams)
                near = joins.seam_ratio(joined, seams, 1)
                drift = np.array(joins.centre_drift(segments)) / diagonal(s.frames[0]) * 100
                joined_all.append(j)
                raw_all.append(r)
                assert result.frames.shape[0] == joined.shape[0]
                rows.append([f"{family} #{index}", f"{r:.2f}", f"{j:.3f}", f"{near:.2f}",
                             " / ".join(f"{d:.1f}" for d in drift)])
    finally:
        pipeline.join_segments = recorder.join
    rows.append(["**median (max)**", f"{np.median(raw_all):.2f} ({max(raw_all):.2f})",
                 f"{np.median(joined_all):.3f} ({max(joined_all):.3f})", "", ""])
    table("Chains: 3 segments (A, B, A), seam velocity change over the median inside segments",
          ["clip", "raw seam ratio", "joined seam ratio", "joined +-1 frame", "centre drift per segment, % diag"],
          rows)


def loops(model, clips, seed):
    rows = []
    summary = {m: ([], []) for m in LOOP_METHODS}
    for family in CYCLIC:
        per = {m: ([], []) for m in summary}
        for index in range(clips):
            s = sample_at(index, 0, "eval", [family])
            plain = pipeline.animate(s.frames[0], s.faces, s.captions[0], model=model, seed=seed).frames
            for method in summary:
                looped = pipeline.animate(s.frames[0], s.faces, s.captions[0], model=model, seed=seed,
                                          loop=method).frames
                per[method][0].append(joins.seam_jump_ratio(looped, [], circular=True))
                # a loop cannot travel (a walk cycle walks in place): compare motion about the centre
                per[method][1].append(in_place_range(looped) / max(in_place_range(plain), 1e-12))
        cells = [family]
        for method in summary:
            seam, amp = per[method]
            summary[method][0].extend(seam)
            summary[method][1].extend(amp)
            cells += [f"{max(seam):.2f}", f"{min(amp):.2f} / {np.mean(amp):.2f}"]
        rows.append(cells)
    cells = ["**all**"]
    for method, (seam, amp) in summary.items():
        cells += [f"{max(seam):.2f}", f"{min(amp):.2f} / {np.mean(amp):.2f}"]
    rows.append(cells)
    header = ["family"]
    for method in summary:
        header += [f"{method}: worst wrap ratio", f"{method}: amplitude min / mean"]
    table(f"Loops: {clips} held-out clips per family, seed {seed}; amplitude of the loop over the "
          "same take unlooped, both in place", header, rows)


def mask_rows(model, clips, seed):
    """The upper half of each mesh (by height) moves, the lower half is pinned: a border that
    cuts through connected surface, where a hard mask tears and a falloff should not."""
    rows = []
    for family in MASKED:
        for index in range(clips):
            s = sample_at(index, 0, "eval", [family])
            rest = s.frames[0]
            weights = (rest[:, 2] > np.median(rest[:, 2])).astype(np.float32)
            edges = prepare_mesh(rest, s.faces, weld_vertices=False).edges
            free = amplitude(pipeline.animate(rest, s.faces, s.captions[0], model=model,
                                              seed=seed).frames[:, weights == 1])
            for falloff in (0.0, 0.05, 0.15):
                clip = pipeline.animate(rest, s.faces, s.captions[0], model=model, seed=seed,
                                        mask=weights, mask_falloff=falloff).frames
                pinned = np.linalg.norm(clip[:, weights == 0] - rest[weights == 0], axis=-1).max()
                rows.append([f"{family} #{index}", f"{falloff:g}", f"{pinned / diagonal(rest):.1e}",
                             f"{100 * masks.border_distortion(clip, edges, weights):.1f}%",
                             f"{amplitude(clip[:, weights == 1]) / max(free, 1e-12):.2f}"])
    table("Masks: the upper half moves, the lower half is pinned (falloff: share of the diagonal)",
          ["clip", "falloff", "pinned motion / diag", "distortion of the edges across the border",
           "upper half's motion kept"], rows)


def variations(model, seed, counts=(4,)):
    rows = []
    for family, index in (("flap_wings", 0), ("swim", 1)):
        s = sample_at(index, 0, "eval", [family])
        for k in counts:
            clock = time.perf_counter()
            single = [pipeline.animate(s.frames[0], s.faces, s.captions[0], model=model, seed=seed + i)
                      for i in range(k)]
            separate = time.perf_counter() - clock
            clock = time.perf_counter()
            batched = pipeline.animate(s.frames[0], s.faces, s.captions[0], model=model, seed=seed,
                                       variations=k)
            together = time.perf_counter() - clock
            diff = max(float(np.abs(batched.takes[i] - single[i].frames).max()) for i in range(k))
            rows.append([f"{family} ({len(s.frames[0])} vertices)", str(k), f"{separate:.2f}",
                         f"{together:.2f}", f"{separate / together:.2f}x", f"{diff:.1e}"])
    table("Variations: K takes batched against K single runs (seconds, this run)",
          ["mesh", "K", "K single runs s", "one batched run s", "speed-up", "largest difference"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=3, help="held-out clips per family")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=["chains", "loops", "masks", "variations"], default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(EMBEDDED_DIR)
    print(f"embedded model, {args.clips} held-out clip(s) per family, seed {args.seed}, "
          f"{torch.get_num_threads()} torch threads")
    if args.only in (None, "chains"):
        chains(model, args.clips, args.seed)
    if args.only in (None, "loops"):
        loops(model, args.clips, args.seed)
    if args.only in (None, "masks"):
        mask_rows(model, max(1, args.clips - 1), args.seed)
    if args.only in (None, "variations"):
        variations(model, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

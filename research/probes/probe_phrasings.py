"""How strongly a model moves for each phrasing of one motion family, on held-out clips.

A wording diagnostic: for every clip of FAMILY among the first LIMIT clips of DATA, every phrase
is prompted as "the <noun> <phrase>" (seed = the clip's rank) and the generated motion amplitude
is divided by the clip's ground truth. A phrase the model understands gives about 1x; one it
does not gives about what "stands still" gives.

    .venv/bin/python research/probes/probe_phrasings.py --model backend/default_model --data DATA/eval \\
        --family melt "melts" "liquefies" "stands still"
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend

from backend import evaluate as ev, mesh as meshprep  # noqa: E402
from backend.model_folder import load_model  # noqa: E402
from backend.data.shards import iter_dataset  # noqa: E402
from backend.pipeline import animate  # noqa: E402


def probe(model_dir: str, data: Path, family: str, phrases: list[str], limit: int) -> dict[str, float]:
    samples = [s for s in itertools.islice(iter_dataset(data), limit) if s.family == family]
    if not samples:
        raise SystemExit(f"no {family} clips among the first {limit} of {data}")
    model = load_model(model_dir)
    # Each clip's normalising frame (frame-0 box centre and size) and ground-truth amplitude.
    frames_of = [meshprep.normalize(s.frames[0].astype(np.float32)) for s in samples]
    truth = [ev.amplitude(ev.normalised(s.frames, *norm)) for s, norm in zip(samples, frames_of)]
    ratios = {}
    for phrase in phrases:
        amps = []
        for rank, (s, norm, gt) in enumerate(zip(samples, frames_of, truth)):
            result = animate(s.frames[0], s.faces, f"the {s.meta['noun']} {phrase}", model=model, seed=rank)
            amps.append(ev.amplitude(ev.normalised(result.frames, *norm)) / gt)
        ratios[phrase] = float(np.mean(amps))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="model directory (repeatable)")
    parser.add_argument("--data", type=Path, required=True, help="procedural eval set (make-dataset --split eval)")
    parser.add_argument("--family", required=True)
    parser.add_argument("--limit", type=int, default=108, help="clips of DATA looked at (default 108, as eval)")
    parser.add_argument("phrases", nargs="+")
    args = parser.parse_args()
    results = {m: probe(m, args.data, args.family, args.phrases, args.limit) for m in args.model}
    print("| phrase | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for phrase in args.phrases:
        print(f"| {phrase} | " + " | ".join(f"{results[m][phrase]:.2f}x" for m in results) + " |")


if __name__ == "__main__":
    main()

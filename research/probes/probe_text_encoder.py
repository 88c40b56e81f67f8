"""Does the text encoder itself know the held-out verbs? A wording diagnostic.

For each unseen verb of the held-out captions (and a few the encoder should know), the MiniLM
token states of the verb in "the dog <verb>" are compared (cosine) with those of one training
verb per family. If the true family ranks first, the meaning is in the encoder's states and
the flow could learn to read it; if it ranks low, no training of the flow on these states can
recover it, and the fix is a text encoder that knows the word.

    .venv/bin/python research/probes/probe_text_encoder.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend

TRAINING_VERBS = {
    "melt": "melts", "shrink": "shrinks", "roll": "rolls", "float_up": "floats up", "sink": "sinks",
    "fall_over": "topples", "shake": "trembles", "grow": "grows", "spin": "spins", "sway": "sways",
    "bounce": "bounces", "jump": "jumps", "twist": "twists", "bend": "bends", "pulse": "pulses",
    "wobble": "wobbles"}
HELD_OUT_VERBS = {
    "liquefies": "melt", "dwindles": "shrink", "somersaults": "roll", "ascends": "float_up",
    "submerges": "sink", "collapses": "fall_over", "quivers": "shake", "enlarges": "grow",
    "revolves": "spin", "pivots": "sway", "becomes smaller": "shrink", "becomes bigger": "grow"}


@torch.inference_mode()
def verb_state(encoder, verb: str) -> torch.Tensor:
    """Mean token state of the verb's word pieces ([CLS] the dog <pieces> [SEP]), unit length."""
    emb = encoder.encode_with_mask([f"the dog {verb}"])
    n = int(emb.mask[0].sum())
    return torch.nn.functional.normalize(emb.tokens[0, 3:n - 1].mean(0), dim=0)


def family_ranks(encoder, held_out: dict[str, str] = HELD_OUT_VERBS,
                 training: dict[str, str] = TRAINING_VERBS) -> dict[str, tuple[int, list[str]]]:
    """verb -> (rank of its true family among the training verbs, the three nearest families)."""
    anchors = {family: verb_state(encoder, verb) for family, verb in training.items()}
    out = {}
    for verb, family in held_out.items():
        state = verb_state(encoder, verb)
        ranked = sorted(anchors, key=lambda f: -float(state @ anchors[f]))
        out[verb] = (ranked.index(family) + 1, ranked[:3])
    return out


def main() -> None:
    from backend.models.text import MiniLMTextEncoder

    ranks = family_ranks(MiniLMTextEncoder())
    print(f"| held-out verb | true family | its rank of {len(TRAINING_VERBS)} | nearest families |")
    print("|---|---|---:|---|")
    for verb, (rank, nearest) in ranks.items():
        print(f"| {verb} | {HELD_OUT_VERBS[verb]} | {rank} | {', '.join(nearest)} |")
    print(f"\nranked first: {sum(r == 1 for r, _ in ranks.values())} of {len(ranks)}")


if __name__ == "__main__":
    main()

"""How far can MiniLM's own notion of meaning carry a held-out caption? A ceiling for wording.

all-MiniLM-L6-v2 was trained to place sentences of like meaning together. For every caption of
the held-out clips, this finds the training caption whose sentence embedding (the package's
mean-pooled, unit-length vector) is nearest and takes that caption's motion family as the
guess. If the guess is wrong, the encoder itself put the caption nearer another motion's
wording, and a flow conditioned on its states has no better lead to follow.

    .venv/bin/python scripts/probe_caption_retrieval.py --train DATA/train_v3 --eval DATA/eval

(about 8 minutes here for 77,991 training captions, most of it encoding them)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@torch.inference_mode()
def sentence_embeddings(encoder, captions: list[str], batch: int = 256) -> torch.Tensor:
    return torch.cat([encoder.encode_with_mask(captions[i:i + batch]).pooled for i in range(0, len(captions), batch)])


def retrieval_accuracy(encoder, train: dict[str, str], held_out: list[tuple[str, str]]) -> dict:
    """train: caption -> family; held_out: (caption, family) pairs. Overall and per-family share
    of held-out captions whose nearest training caption has the same family, and what the
    misses were taken for."""
    bank_captions = list(train)
    bank = sentence_embeddings(encoder, bank_captions)
    queries = sentence_embeddings(encoder, [c for c, _ in held_out])
    nearest = torch.cat([(queries[i:i + 512] @ bank.T).argmax(1) for i in range(0, len(queries), 512)])
    guesses = [train[bank_captions[int(j)]] for j in nearest]
    per_family: dict[str, Counter] = {}
    for (_, family), guess in zip(held_out, guesses):
        per_family.setdefault(family, Counter())[guess] += 1
    right = sum(g == f for (_, f), g in zip(held_out, guesses))
    return {"accuracy": right / len(held_out), "n": len(held_out), "per_family": per_family}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="a training dataset folder")
    parser.add_argument("--eval", type=Path, required=True, help="a held-out dataset folder")
    args = parser.parse_args()

    from backend.data.shards import iter_dataset
    from backend.models.text import MiniLMTextEncoder

    train = {c: s.family for s in iter_dataset(args.train) if s.family for c in s.captions}
    held_out = [(c, s.family) for s in iter_dataset(args.eval) if s.family for c in s.captions]
    result = retrieval_accuracy(MiniLMTextEncoder(), train, held_out)
    print(f"nearest training caption (of {len(train)}) has the right family for "
          f"{100 * result['accuracy']:.1f}% of {result['n']} held-out captions\n")
    print("| family | right | taken for |")
    print("|---|---:|---|")
    for family, guesses in sorted(result["per_family"].items()):
        n = sum(guesses.values())
        wrong = ", ".join(f"{g} {k}" for g, k in guesses.most_common() if g != family)
        print(f"| {family} | {100 * guesses[family] / n:.0f}% | {wrong} |")


if __name__ == "__main__":
    main()

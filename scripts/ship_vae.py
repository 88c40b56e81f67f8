"""Put the VAE of a decoder-only fine-tune into a copy of a model folder.

    .venv/bin/python scripts/ship_vae.py --vae RUN --model MODEL --out NEW_MODEL

A decoder stage (`freeze_encoder` in its config) leaves every clip's latents as they were, so
the flow trained on them and the latent statistics in config.json stay valid and only
vae.safetensors changes. This writes NEW_MODEL with MODEL's config, flow, vocabulary and model
card and RUN's VAE, its parameters in the precision MODEL stores (float16, as `train flow` exports
them). It refuses when an encoder weight differs from MODEL's: then the stage was not
decoder-only, and the flow must be trained again instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.model_folder import read_model_folder, write_model_folder  # noqa: E402
from backend.train.flow import shipped_state  # noqa: E402
from backend.train.vae import ENCODER_MODULES, load_trained_vae  # noqa: E402


def ship_vae(vae_run: Path, model: Path, out: Path) -> list[str]:
    """Returns the names of the tensors that changed (decoder weights only)."""
    folder = read_model_folder(model)
    old = folder.weights["vae"]
    dtype = next((v.dtype for v in old.values() if v.is_floating_point() and v.dtype != torch.float32), torch.float32)
    new = shipped_state(load_trained_vae(vae_run), dtype)
    if set(new) != set(old):
        raise SystemExit(f"error: {vae_run} and {model} hold different VAE layouts.")
    changed = [k for k in new if not torch.equal(new[k], old[k])]
    moved = [k for k in changed if k.split(".")[0] in ENCODER_MODULES]
    if moved:
        raise SystemExit(f"error: {len(moved)} encoder tensors differ (e.g. {moved[0]}): the latents changed, so "
                         "the flow no longer fits them; train the flow again rather than swapping the VAE.")
    if out.exists():
        raise SystemExit(f"error: {out} exists; choose a new folder.")
    folder.weights["vae"] = new
    write_model_folder(out, folder)
    return changed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vae", type=Path, required=True, help="the decoder fine-tune's run folder")
    p.add_argument("--model", type=Path, required=True, help="the model folder it started from")
    p.add_argument("--out", type=Path, required=True, help="new model folder to write")
    args = p.parse_args()
    changed = ship_vae(args.vae, args.model, args.out)
    print(f"wrote {args.out}: {len(changed)} decoder tensors changed, encoder unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The official AnimateAnyMesh release -> one of our model folders (`python -m backend import-official`).

Official files are PyTorch pickles. We open them only with `torch.load(weights_only=True)`, which
refuses anything but tensors and plain containers, so a tampered file cannot run code. What comes
out is an ordinary model folder (see model_folder), written by the same writer as our own models.

The official flow checkpoint carries its CLIP text encoder under Hugging Face names; the import
splits it off and renames it to open_clip's, so the folder's three weight files each load into one
of our networks as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import CompatConfig, ModelConfig, VAEConfig, section_from_dict
from .errors import CheckpointError
from .model_folder import ModelFolder, check_state_dict, write_model_folder
from .models.flow import DyMeshMMDiT
from .models.text.clip_weights import DEFAULT_HF_PREFIX, clip_config_from_weights, hf_to_open_clip_state_dict
from .models.text.encoders import build_text_encoder_from_config
from .models.vae import DyMeshVAE

CLIP_KEYS = "clip_text_model."  # the flow checkpoint's keys that belong to its text encoder
OFFICIAL_PAD_TO = 4096  # test_drive.py's default max_length


@dataclass
class OfficialLayout:
    vae: Path
    flow: Path
    stats: Path
    training_config: Path
    training: dict = field(default_factory=dict)  # training_config.json as read (a JSON object)


def read_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from an official .pth: raw, under `model_state_dict`, with or without `module.`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            # a raw pickle of a newer protocol draws a warning before the refusal: noise to a user
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle opcodes, wrong file type...
        text = str(exc)
        # torch's own message for a refused pickle advises loading it with weights_only=False,
        # the one thing that would run its code: say what the file is instead. A garbled file is
        # refused by the same unpickler (its bytes read as unknown opcodes), so only a well-formed
        # pickle that names a callable is called code.
        calls = _pickled_calls(path) if _refused_by_safe_loader(exc, text) else None
        if calls is not None:
            # the one torch refused, where its message says; else the first that is not one of
            # the tensor rebuilders every checkpoint names
            named = re.search(r"GLOBAL ([\w.]+)", text)
            callee = named.group(1) if named else next(
                (c for c in calls if c.split(".")[0] not in ("torch", "collections")), None)
            raise CheckpointError(
                f"{path.name} holds code that would run on loading"
                + (f" (a call to {callee})" if callee else "")
                + "; refused: only tensor-only checkpoints are read. Take the file from the official "
                "release.") from None
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        if "weights_only" in text:  # never torch's advice to load the file unsafely
            first = ""
        raise CheckpointError(
            f"cannot read {path.name}: {type(exc).__name__}{': ' + first if first else ''}. "
            "The file is truncated, corrupted or not a PyTorch checkpoint; download it again.") from None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name} holds no state dict (found {type(obj).__name__}).")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path.name}: entry {key!r} is not a tensor; not a model state dict.")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def _refused_by_safe_loader(exc: Exception, text: str) -> bool:
    """torch's weights-only unpickler refused the pickle (a global or an opcode it does not allow),
    as against a file it could not read at all."""
    return isinstance(exc, pickle.UnpicklingError) and ("weights only" in text.lower()
                                                         or "weights_only" in text)


_SCAN_LIMIT = 64 << 20  # the pickle of a torch.save file is its structure only: kilobytes


def _pickled_calls(path: Path) -> list[str] | None:
    """The callables a well-formed pickle names (the bare file, or the data.pkl of a torch.save
    zip), read with pickletools, which runs nothing; None where it is no complete pickle naming
    any, which is what a garbled file gives. Names that are not plain dotted words are left out."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((m for m in archive.infolist() if m.filename.endswith("data.pkl")), None)
                if member is None or member.file_size > _SCAN_LIMIT:
                    return None
                data = archive.read(member)
        else:
            if path.stat().st_size > _SCAN_LIMIT:
                return None
            data = path.read_bytes()
        calls, recent = [], []
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):  # raises at a malformed opcode
            if opcode.name in ("GLOBAL", "INST"):
                calls.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":  # module and name: the two strings pushed just before
                calls.append(".".join(recent[-2:]) if len(recent) >= 2 else "")
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                recent.append(arg)
            elif opcode.name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                recent = []
    except Exception:
        return None
    if not calls:
        return None
    return [c for c in calls if re.fullmatch(r"[\w.]+", c)]  # nothing raw from the file reaches a terminal


def resolve_official_layout(src: Path, rf_exp: str = "rf_model", rf_epoch: str = "f") -> OfficialLayout:
    """Find the files the way test_drive.py does, starting from `src` or `src/checkpoints`."""
    src = Path(src)
    root = src / "checkpoints" if (src / "checkpoints").is_dir() else src
    training_config = root / rf_exp / "training_config.json"
    if not training_config.is_file():
        raise CheckpointError(
            f"{training_config} not found. Point import-official at the folder holding "
            "checkpoints/ from the official release (files: checkpoints/dvae/dvae_f.pth, "
            "checkpoints/rf_model/rf_epoch_f.pth, checkpoints/rf_model/training_config.json, "
            "checkpoints/dvae_factors/dvae_f.json).")
    training = read_json_object(training_config)
    for section in ("vae_config", "rf_config"):
        if section not in training:
            raise CheckpointError(f"{training_config} has no '{section}'; it is not the official "
                                  "rf_model/training_config.json.")
    args = training.get("training_args", {})
    if not isinstance(args, dict):
        raise CheckpointError(f"{training_config}: 'training_args' must be a JSON object of fields.")
    vae_exp = _file_name_part(args.get("vae_exp_dependency", "dvae"), "training_args.vae_exp_dependency",
                              training_config)
    vae_epoch = _file_name_part(args.get("vae_epoch_dependency", "f"),
                                "training_args.vae_epoch_dependency", training_config)
    layout = OfficialLayout(vae=root / vae_exp / f"{vae_exp}_{vae_epoch}.pth",
                            flow=root / rf_exp / f"rf_epoch_{rf_epoch}.pth",
                            stats=root / "dvae_factors" / f"{vae_exp}_{vae_epoch}.json",
                            training_config=training_config, training=training)
    for name in ("vae", "stats"):  # the paths the file names; rf_exp and rf_epoch are the user's
        _inside(root, getattr(layout, name), training_config,
                "training_args.vae_exp_dependency / vae_epoch_dependency")
    for name in ("vae", "flow", "stats"):
        if not getattr(layout, name).is_file():
            raise CheckpointError(f"{getattr(layout, name)} not found (needed by "
                                  f"{training_config.name}); the official checkpoint folder is incomplete.")
    return layout


def _file_name_part(value, name: str, source: Path) -> str:
    """A name the config joins into a file path: text, or an epoch number."""
    text = value if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    if not text or "\0" in text:
        raise CheckpointError(f"{source}: {name} must be a folder name such as \"dvae\" or an "
                              f"epoch such as \"f\" (got {json.dumps(value)[:60]}).")
    return text


def _inside(root: Path, path: Path, source: Path, names: str) -> None:
    """Refuse a path that leaves the checkpoint folder. The names come from a file that came with
    the weights: an absolute path or `..` in them would make the import read whatever file they
    point at. Judged on the names, not on where links lead, so a folder whose files are links into
    a download cache still imports."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, target]) != base:
        raise CheckpointError(f"{source}: {names} lead outside the checkpoint folder {root} "
                              f"(to {path}); refused. The official file names a folder inside it, "
                              "such as \"dvae\".")


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold one object; CheckpointError naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); take it from the official release "
                              "again.") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or exc}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold one JSON object, not a {type(data).__name__}.")
    return data


def check_official_heads(cfg: VAEConfig, values: dict, state: dict[str, torch.Tensor]) -> None:
    """An official vae_config may leave out heads/dim_head: the defaults must then fit the weights."""
    if "heads" in values and "dim_head" in values:
        return
    probe = "dec_blocks.0.0.attn.to_q.weight"
    if probe not in state:
        return  # not a DyMeshVAE's weights at all: the key check names what is missing
    inner = state[probe].shape[0]
    if cfg.heads * cfg.dim_head != inner:
        raise CheckpointError(f"vae_config names no heads/dim_head and the default 8x64 does not fit "
                              f"the weights (inner width {inner}); add them to training_config.json.")


def import_official(src: Path, out: Path, *, clip_config: Path | None = None,
                    tokenizer_dir: Path | None = None, rf_exp: str = "rf_model", rf_epoch: str = "f",
                    pad_to: int = OFFICIAL_PAD_TO, name: str = "official") -> ModelConfig:
    """Convert an official checkpoint folder into our model directory (safetensors + JSON)."""
    if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 0:
        raise CheckpointError(f"pad_to must be a whole number of at least 0, 0 for no padding "
                              f"(got {pad_to!r}).")
    layout = resolve_official_layout(src, rf_exp, rf_epoch)
    source = str(layout.training_config)
    # Every small file is checked before the weights (about 1 GB) are read.
    # Their vae_config also holds `norm_type` and rf_config `use_flash2`, which the networks never
    # took: ignored, where our own files refuse a field they do not know.
    vae_values = layout.training["vae_config"]
    vae_cfg = section_from_dict("vae", vae_values, source, "vae_config", ignore_unknown=True)
    flow_cfg = section_from_dict("flow", layout.training["rf_config"], source, "rf_config",
                                 ignore_unknown=True)
    stats = section_from_dict("stats", read_json_object(layout.stats), str(layout.stats), "",
                              require_all=True)
    vae_state = read_official_state_dict(layout.vae)
    check_official_heads(vae_cfg, vae_values, vae_state)
    flow_state, clip_hf = split_text_encoder(read_official_state_dict(layout.flow), layout.flow.name)

    text_cfg = clip_config_from_weights(clip_hf, DEFAULT_HF_PREFIX, clip_config)

    text_state = hf_to_open_clip_state_dict(clip_hf, DEFAULT_HF_PREFIX)
    # Networks built only to compare shapes: on the meta device they take no memory, whatever
    # sizes the training config claims.
    with torch.device("meta"):
        check_state_dict(DyMeshVAE(vae_cfg), vae_state, layout.vae.name)
        check_state_dict(DyMeshMMDiT(flow_cfg, text_cfg.width), flow_state, layout.flow.name)
        check_state_dict(build_text_encoder_from_config(text_cfg), text_state,
                         f"{layout.flow.name} (clip_text_model)")

    config = ModelConfig(
        name=name, vae=vae_cfg, flow=flow_cfg, text=text_cfg, stats=stats,
        compat=CompatConfig(pad_to=pad_to, replace_index_zero=True),
        provenance=f"imported from the official AnimateAnyMesh checkpoint {Path(src).resolve()}")
    config.check(f"the config imported from {src}")  # never write a folder its reader would refuse
    write_model_folder(out, ModelFolder(
        config, {"vae": vae_state, "flow": flow_state, "text": text_state},
        tokenizer_dir=tokenizer_dir, readme=_provenance_readme(name, src, layout)))
    return config


def split_text_encoder(rf_state: dict[str, torch.Tensor], source: str
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(flow weights, CLIP text weights under HF names) of an official flow checkpoint."""
    clip_hf = {k: v for k, v in rf_state.items() if k.startswith(CLIP_KEYS)}
    if not clip_hf:
        raise CheckpointError(f"{source} holds no clip_text_model.* weights; the official "
                              "flow checkpoint carries its CLIP text encoder.")
    return {k: v for k, v in rf_state.items() if not k.startswith(CLIP_KEYS)}, clip_hf


def _provenance_readme(name: str, src: Path, layout: OfficialLayout) -> str:
    sources = "\n".join(f"- `{p.name}` sha256 {_sha256(p)}" for p in
                        (layout.vae, layout.flow, layout.stats, layout.training_config))
    return (f"# {name}\n\nAnimateAnyMesh weights converted by `python -m backend import-official` "
            f"from `{Path(src).resolve()}`.\nConverted to safetensors; values unchanged.\n\nSources:\n{sources}\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

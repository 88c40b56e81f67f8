"""The flow's optional sentence path: a no-op when it starts, the caption's summary when trained,
absent from the null prompt, and the only text a token-dropped sample sees."""

import dataclasses
import math

import torch

from backend.config import FlowConfig
from backend.models.flow import DyMeshMMDiT, sentence_embedding

TEXT_WIDTH = 24


def flows(seed=0):
    """A small flow without the sentence path and one with it, sharing every other weight."""
    torch.manual_seed(seed)
    plain_cfg = FlowConfig(input_channels=8, output_channels=8, width=32, layers=2, heads=2, init_scale=1.0)
    plain = DyMeshMMDiT(plain_cfg, TEXT_WIDTH)
    for p in plain.parameters():  # adaLN-zero would hide the text entirely at initialisation
        torch.nn.init.normal_(p, std=0.2)
    with_sentence = DyMeshMMDiT(dataclasses.replace(plain_cfg, sentence_conditioning=True), TEXT_WIDTH)
    missing = with_sentence.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(DyMeshMMDiT.zero_started) for k in missing)
    return plain.eval(), with_sentence.eval()


def inputs(batch=2, real=5, length=8):
    x = torch.randn(batch, 6, 8)
    t = torch.rand(batch)
    text = torch.randn(batch, length, TEXT_WIDTH)
    text[:, real:] = 0  # MiniLM zeroes padding positions
    return x, t, text


def test_the_official_layout_has_no_sentence_path():
    plain, with_sentence = flows()
    assert not any(k.startswith("sentence_mlp") for k in plain.state_dict())
    assert set(with_sentence.state_dict()) - set(plain.state_dict()) == {
        "sentence_mlp.c_fc.weight", "sentence_mlp.c_fc.bias", "sentence_mlp.c_proj.weight", "sentence_mlp.c_proj.bias"}


def test_a_new_sentence_path_computes_what_the_flow_did_until_trained():
    plain, with_sentence = flows()
    x, t, text = inputs()
    keep = torch.ones(2)
    with torch.no_grad():
        assert torch.equal(plain(x, t, text, keep), with_sentence(x, t, text, keep))
        torch.nn.init.normal_(with_sentence.sentence_mlp.c_proj.weight, std=0.2)
        assert not torch.allclose(plain(x, t, text, keep), with_sentence(x, t, text, keep))
        # the null prompt has no sentence: unconditional velocities are the plain flow's
        null = torch.zeros(2)
        torch.testing.assert_close(plain(x, t, text, null), with_sentence(x, t, text, null))


def test_token_dropped_samples_see_only_the_sentence_embedding():
    _, flow = flows(seed=1)
    torch.nn.init.normal_(flow.sentence_mlp.c_proj.weight, std=0.2)
    x, t, text = inputs()
    # same sum over the real tokens, so the same sentence embedding, but other tokens
    delta = torch.randn(2, TEXT_WIDTH)
    other = text.clone()
    other[:, 0] += delta
    other[:, 1] -= delta
    torch.testing.assert_close(sentence_embedding(text), sentence_embedding(other))
    keep, hidden = torch.ones(2), torch.zeros(2)
    with torch.no_grad():
        torch.testing.assert_close(flow(x, t, text, keep, hidden), flow(x, t, other, keep, hidden))
        assert not torch.allclose(flow(x, t, text, keep), flow(x, t, other, keep))
        # and that sentence still steers: another caption's embedding moves the velocity
        assert not torch.allclose(flow(x, t, text, keep, hidden), flow(x, t, text.flip(0), keep, hidden))


def test_the_sentence_embedding_is_minilms_own():
    from backend.models.text import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    prompts = ["a dog wags its tail", "the dragon slowly flaps its big wings", "x"]
    with torch.inference_mode():
        embedded = encoder.encode_with_mask(prompts)
    got = sentence_embedding(embedded.tokens)
    torch.testing.assert_close(got, embedded.pooled * math.sqrt(encoder.width), atol=1e-5, rtol=1e-5)

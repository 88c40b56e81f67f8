"""Grouping an eval run's misses by the caption template that worded each clip."""

import numpy as np


def test_misses_by_wording_finds_the_template_of_every_caption(load_script):
    """research/probes/misses_by_wording.py groups eval records by caption template: every rendered
    caption must lead back to the template that made it. (A few training templates render the
    same sentence, "a dog running with short strides" from "{a_noun} {ving} {dir} {amp}" and
    "{a_noun} {verb} {dir} {amp}"; then any template that renders it will do.)"""
    from backend.data.captions import CAPTIONS, EVAL_TEMPLATES, render, templates_of

    script = load_script("misses_by_wording", "research/probes")
    rng = np.random.default_rng(0)
    wrong = []
    for family in CAPTIONS:
        for index in range(len(templates_of(family))):
            for noun in ("dog", "owl", "soft cube"):
                params = {"speed": str(rng.choice(["slow", "normal", "fast"])),
                          "amplitude": str(rng.choice(["small", "normal", "large"])),
                          "direction": "left"}
                caption = render(family, index, noun, params, rng)
                found = script.template_of(family, caption)
                exact = index in EVAL_TEMPLATES or found in EVAL_TEMPLATES
                if found is None or (found != index and (exact or not script.template_pattern(
                        templates_of(family)[found]).match(caption))):
                    wrong.append((family, index, found, caption))
    assert not wrong, wrong[:5]
    records = [{"family": "melt", "prompt": "a dog liquefies slowly", "judged_as": "pulse"},
               {"family": "melt", "prompt": "an owl liquefies", "judged_as": "melt"},
               {"family": "melt", "prompt": "the dog melts", "judged_as": "melt"}]
    (family, index, n, missed, judged), second = script.misses_by_template(records)
    assert (family, templates_of("melt")[index], n, missed, dict(judged)) == \
        ("melt", "{a_noun} liquefies {amp} {speed}", 2, 1, {"pulse": 1})
    assert second[3] == 0

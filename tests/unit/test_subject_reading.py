"""The whole-mesh reading of part-word subjects (backend/subject_reading.py)."""

import itertools
import re

import pytest

from backend.data import creatures, procedural
from backend.data.captions import CAPTIONS, _DEFAULTS, _SLOT_AXIS, render, templates_of
from backend.eval_prompts import SUBJECT_CLASSES, Subject, prompt_for, whole_body_families
from backend.subject_reading import PART_WORDS, read_prompt, whole_mesh_reading


def generator_nouns() -> list[str]:
    nouns = {n for table in (procedural._PRIMITIVE_NOUNS, procedural._COMPOSITE_NOUNS) for group in table.values()
             for n in group}
    for name in dir(creatures):
        if name.endswith("_NOUNS"):
            nouns.update(getattr(creatures, name))
    return sorted(nouns)


class _Choose:
    """A stand-in for render's generator that takes the phrase options in turn."""

    def __init__(self, picks):
        self.picks = iter(picks)

    def integers(self, high):
        return next(self.picks) % high


def every_caption(family: str, template_index: int, noun: str):
    """The template with every category of every axis and every phrase option of its slots."""
    template = templates_of(family)[template_index]
    slots = [s for s in re.findall(r"\{(\w+)\}", template) if s not in ("a_noun", "the_noun", "noun")]
    axes = sorted({_SLOT_AXIS[s] for s in slots})
    tables = [CAPTIONS[family][1].get(s) or _DEFAULTS[s] for s in slots]
    categories = {axis: sorted({c for s, t in zip(slots, tables) if _SLOT_AXIS[s] == axis for c in t}) for axis in axes}
    widest = max([len(options) for t in tables for options in t.values()] + [1])
    for combo in itertools.product(*categories.values()):
        params = {"speed": "normal", "amplitude": "normal", "direction": None, **dict(zip(axes, combo))}
        for pick in range(widest):
            yield render(family, template_index, noun, params, _Choose([pick] * len(slots)))


def test_no_caption_of_the_generator_is_read_differently():
    """Training and evaluation captions, in every wording, with every noun: the reading is only
    for what artists type, never for what the model learned from or is scored on."""
    every = generator_nouns()
    assert {"dog", "winged horse", "pine tree", "robot"} <= set(every)
    # A noun changes the reading only through its words: the ones of several words, and two others.
    nouns = [n for n in every if " " in n] + ["dog", "ball"]
    assert not [n for n in every for w in n.split() if w in PART_WORDS]
    changed, seen = [], 0
    for family in CAPTIONS:
        for index in range(len(templates_of(family))):
            for noun in nouns:
                for caption in every_caption(family, index, noun):
                    seen += 1
                    if whole_mesh_reading(caption).prompt != caption:
                        changed.append(caption)
    assert seen > 10_000
    assert changed == []


@pytest.mark.parametrize("subject", SUBJECT_CLASSES["part"][1])
def test_every_whole_body_prompt_with_a_part_word_subject_is_read_without_it(subject):
    for family in whole_body_families():
        prompt = prompt_for(family, Subject("part", subject))
        reading = whole_mesh_reading(prompt)
        assert reading.prompt == prompt_for(family, Subject("none", "")), prompt
        assert subject in reading.note and reading.prompt in reading.note


@pytest.mark.parametrize("prompt, read", [
    ("the monkey head jumps forward", "jumps forward"),
    ("The Stone Dragon tail spins clockwise!", "spins clockwise!"),
    ("teapot spout-lid handle falls over", None),  # no part word
    ("a gargoyle head melts slowly", "melts slowly"),
    ("old pirate skull sinks into the ground", "sinks into the ground"),
    ("the duck wings grow", "grow"),
    ("A monkey head, jumping forward.", "jumping forward."),
    ("the monkey-head jumps", "jumps"),
    ("  the monkey head   jumps and then spins ", "jumps and then spins"),
    # a part of something named: as written
    ("the head of the wolf tips forward and back", None),
    ("the dog's head bobs up and down", None),
    ("the monkey head's eyes roll", None),
    ("the monkey head on a stick spins", None),  # the subject goes on
    ("the monkey head and the body jump", None),
    ('"the monkey head" jumps', None),
    ("the monkey, head down, jumps", None),  # not one name: a comma between its words
    ("the left arm rises", None),
    ("its head turns", None),
    ("the head turns back and forth", None),
    # the part moves: as written
    ("the dragon tail wags", None),
    ("the robot arm waves hello", None),
    ("the monkey head nods its head", None),
    ("dog tail swinging left and right", None),
    ("the horse leg kicks", None),
    # the words before the part may describe the motion, not name the mesh
    ("the big head jumps", None),
    ("a ball falls over head first", None),
    ("slowly head jumps", None),
    # nothing after the subject
    ("the monkey head", None),
    ("", None),
])
def test_what_is_read_and_what_is_left(prompt, read):
    reading = whole_mesh_reading(prompt)
    assert reading.prompt == (prompt if read is None else read)
    assert bool(reading.note) == (read is not None)


def test_the_literal_reading_changes_nothing():
    assert read_prompt("the monkey head jumps", "literal").prompt == "the monkey head jumps"
    assert read_prompt("the monkey head jumps", "whole_mesh").prompt == "jumps"
    with pytest.raises(ValueError, match="whole_mesh"):
        read_prompt("x", "loose")

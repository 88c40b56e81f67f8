"""Reading a prompt whose subject names the mesh with a part word: "the monkey head jumps".

The embedded model's captions use a noun with a part word as the subject only for motions of
that part ("dog tail wagging", "dog wings flapping"), so its flow reads "the monkey head jumps"
as a part motion and barely moves Suzanne (0.5% of her diagonal; "it jumps" 34%: model card,
issue 20). Fine-tunes that taught compounds as whole-mesh subjects broke the held-out part
wording "the head of the wolf tips forward and back" instead. An artist who names the object
they see means the whole mesh; so for models whose config asks for it
(`text.subject_reading: "whole_mesh"`), a prompt that opens with such a compound and then says
nothing about parts is sent without its subject: "the monkey head jumps forward" is read as
"jumps forward", which this model follows like any unseen noun or pronoun.

A prompt is left as written when anything marks a real part motion: a possessive or "of" ("the
dog's head bobs", "the head of the wolf tips"), a side or position word ("the left arm"), a part
word or a part-motion word after the subject ("the dragon tail wags", "the robot arm waves its
hand"), or a subject word that the captions use to describe motion ("the big head", which may
mean the size of the motion). Every caption the procedural generator writes, in either split,
comes back unchanged (a test keeps it so), so the reading never touches what the model was
trained or evaluated on.

Plain Python (no torch), so it tests on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .vocabulary import word_key

READINGS = ("literal", "whole_mesh")

# Parts of a body or a figure, singular and plural; a subject ending in one may name the mesh or
# its part. Matched as whole words ("man" is not "mane", "winged" is not "wing").
_PARTS = ("head", "tail", "arm", "leg", "wing", "ear", "hand", "neck", "paw", "face", "nose", "torso",
          "claw", "fin", "horn", "beak", "skull", "antler", "trunk", "finger", "toe", "knee", "elbow",
          "shoulder", "hip", "jaw", "mouth", "eye", "tentacle", "flipper", "limb", "mane", "snout",
          "muzzle")
PART_WORDS = frozenset(_PARTS + tuple(p + "s" for p in _PARTS) + ("foot", "feet", "hoof", "hooves", "hoofs"))
# Words that move a part, not a whole body, as artists and the captions use them: after a
# compound subject they mean the part itself moves ("the dragon tail wags", "duck wing beats").
PART_MOTION_WORDS = frozenset(word_key(w) for w in (
    "nod", "nodding", "wag", "wagging", "waggle", "flap", "flapping", "flutter", "wave", "waving",
    "beat", "wingbeat", "swing", "swinging", "swish", "flick", "sweep", "raise", "raising", "hoist",
    "salute", "greet", "cheer", "point", "kick", "step", "walk", "walking", "trot", "march",
    "stride", "stroll", "jog", "gallop", "swim", "swimming", "paddle", "stroke", "slither",
    "crawl", "creep", "wriggle", "undulate", "rear", "rearing", "wiggle", "blink", "chew",
    "bite", "clap", "grab", "reach", "scratch", "stomp", "tap", "paw",
))
# Words before the part that make it a part of something named before them, not the mesh.
_PART_MARKERS = frozenset((
    "its", "his", "her", "their", "my", "your", "our", "whose", "left", "right", "front", "back",
    "rear", "hind", "upper", "lower", "top", "bottom", "both", "two", "four", "each", "every",
    "one", "other", "side", "of", "and", "or", "with",
))
_DETERMINERS = frozenset(("the", "a", "an", "this", "that", "these", "those"))
# A first word after the subject that carries the subject on ("the monkey head on a stick spins")
_SUBJECT_GOES_ON = frozenset(("and", "or", "with", "without", "of", "on", "in", "at", "from", "by",
                              "for", "near", "under", "inside", "made"))
_WORD = re.compile(r"[A-Za-z]+")
_JOINS_A_NAME = re.compile(r"[\s-]+")  # what may stand between the subject's words: "monkey-head"
MAX_NAME_WORDS = 3  # "old stone dragon tail": longer runs before a part word are rarely a name


@dataclass(frozen=True)
class Reading:
    """What the flow is given for a prompt, and the note that tells the artist why."""

    prompt: str
    note: str = ""


@lru_cache(maxsize=1)
def caption_words() -> frozenset[str]:
    """The captions' words around their subject (captions.wording_words), as word keys."""
    from .data.captions import wording_words

    return frozenset(word_key(w) for w in wording_words())


def _names_the_mesh(names: list[str]) -> bool:
    """Whether the words before the part word can only be a name ("monkey", "stone dragon"):
    none marks a part, and none is one of the captions' own motion or size words."""
    vocabulary = caption_words()
    return all(w not in _PART_MARKERS and word_key(w) not in vocabulary
               and w not in PART_WORDS for w in names)


def whole_mesh_reading(prompt: str) -> Reading:
    """The prompt without its subject when the subject is a name with a part word and the rest
    says nothing of parts; otherwise the prompt as written (and no note)."""
    tokens = list(_WORD.finditer(prompt))
    if not tokens or prompt[:tokens[0].start()].strip():
        return Reading(prompt)
    start = 1 if tokens[0].group().lower() in _DETERMINERS else 0
    part = next((j for j in range(start + 1, min(start + MAX_NAME_WORDS + 1, len(tokens)))
                 if tokens[j].group().lower() in PART_WORDS), None)
    if part is None:
        return Reading(prompt)
    if not all(_JOINS_A_NAME.fullmatch(prompt[a.end():b.start()]) for a, b in zip(tokens, tokens[1:part + 1])):
        return Reading(prompt)  # "the monkey's head", "monkey (head)"
    names = [t.group().lower() for t in tokens[start:part]]
    rest = prompt[tokens[part].end():]
    after = [t.group().lower() for t in tokens[part + 1:]]
    if (not _names_the_mesh(names) or not after or after[0] in _SUBJECT_GOES_ON
            or rest.lstrip()[:1] in ("'", "\u2019")):  # "the monkey head's eyes ..."
        return Reading(prompt)
    if any(w in PART_WORDS or word_key(w) in PART_MOTION_WORDS for w in after):
        return Reading(prompt)
    read = prompt[tokens[part + 1].start():].strip()
    subject = prompt[:tokens[part].end()].strip()
    note = (f"read '{prompt.strip()}' as '{read}': this model takes a part word in the subject "
            f"('{subject}') for a motion of that part only, so the whole mesh moves as asked. "
            "To move just the part, say what it does: 'the monkey nods its head'.")
    return Reading(read, note)


def read_prompt(prompt: str, reading: str) -> Reading:
    """The prompt as the model should be given it under the model's `text.subject_reading`."""
    if reading == "literal":
        return Reading(prompt)
    if reading == "whole_mesh":
        return whole_mesh_reading(prompt)
    raise ValueError(f"unknown subject reading {reading!r}; choose from {', '.join(READINGS)}")

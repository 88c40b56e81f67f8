"""Other subjects for training captions, so that the verb, not the noun, decides the motion.

The procedural captions name each mesh with a few nouns ("ball", "dog", "tree"). A flow trained
on them alone read a part word in the subject ("the monkey head jumps") as a part motion and
barely moved the mesh (issue 20). Training swaps the subject of some captions for one of these:

  objects    nouns of things artists animate that the generator never names ("barrel", "rocket")
  parts      a creature or object noun with a body-part word ("lion head", "cat's tail"): for
             whole-body motions, where the caption's verb is about the whole mesh, and (training
             option `compound_subjects: "all"`) for part motions too, so that a part word in the
             subject predicts no motion at all and only the verb is left to read

`python -m backend eval-prompts` measures on its own subject lists; none of its unseen nouns and
none of its compounds' nouns is used here (a test keeps it so), so its part-word class still asks
for subjects the model never saw.
"""

from __future__ import annotations

import re

import torch

from .captions import article

OBJECT_NOUNS = (
    "table", "bottle", "rock", "boat", "house", "cup", "bucket", "pumpkin", "barrel", "guitar",
    "bench", "bicycle", "shoe", "kettle", "crate", "figurine", "doll", "bust", "trophy", "plant",
    "cactus", "candle", "piano", "helmet", "bell", "pear", "lemon", "tomato", "carrot", "cake",
    "bus", "train", "plane", "rocket", "ship", "tractor", "desk", "stool", "clock", "mug",
    "penguin", "frog", "turtle", "octopus", "alien", "character", "mannequin", "knight", "wizard",
    "gnome", "mesh", "model", "prop", "spaceship", "jellyfish", "cloud", "crystal", "gem",
    "pillow", "backpack", "hat", "ghost", "cookie", "watermelon", "mailbox", "lantern",
)
COMPOUND_NOUNS = (
    "lion", "cat", "dog", "bird", "fish", "bear", "goat", "fox", "owl", "frog", "wolf", "deer",
    "elephant", "giraffe", "tiger", "pig", "cow", "sheep", "mouse", "lizard", "shark", "eagle",
    "toy", "doll", "alien", "character", "knight", "gnome", "stone", "wooden",
)
PART_WORDS = ("head", "tail", "arm", "leg", "wing", "ear", "hand", "foot", "neck", "paw", "face",
              "nose", "body", "torso", "claw", "fin", "horn", "beak", "skull", "hoof")


def _pick(options, generator: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


POSSESSIVE_SHARE = 0.25  # of the compounds, those written "lion's head" (the first run's recipe)


def draw_subject(compound: bool, generator: torch.Generator, possessive: float = POSSESSIVE_SHARE) -> str:
    """A training subject: an object noun, or (where `compound` allows, half the time) a noun
    with a part word, with chance `possessive` written "lion's head" rather than "lion head"."""
    if compound and torch.rand(1, generator=generator).item() < 0.5:
        noun, part = _pick(COMPOUND_NOUNS, generator), _pick(PART_WORDS, generator)
        if noun not in ("stone", "wooden") and torch.rand(1, generator=generator).item() < possessive:
            return f"{noun}'s {part}"
        return f"{noun} {part}"
    return _pick(OBJECT_NOUNS, generator)


def swap_subject(caption: str, noun: str, subject: str) -> str:
    """The caption with its first mention of the mesh's noun replaced by `subject`, the article
    agreeing: "a dog jumps" -> "an alien head jumps". Only the first: "a ball bounces like a ball"
    keeps its comparison. A caption without the noun comes back unchanged.
    """
    def replace(match: re.Match) -> str:
        if match.group(1) is None:
            return subject
        return f"the {subject}" if match.group(1) == "the" else f"{article(subject)} {subject}"

    return re.sub(rf"\b(?:(an?|the) )?{re.escape(noun)}\b", replace, caption, count=1)

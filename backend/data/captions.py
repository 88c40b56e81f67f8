"""Captions: paraphrase templates for the procedural motion families, and captions derived from
DeformingThings4D clip names.

Procedural captions
-------------------
Each family has 8 templates. Templates 0-5 are for training, templates 6-7 are reserved for
evaluation (`EVAL_TEMPLATES`): an evaluation caption is a sentence shape the model never saw, so
text-motion accuracy on it measures understanding, not memorised strings.

Templates use slots filled from the motion parameters and the mesh's noun:
  {a_noun} "a dog" / "an owl"   {the_noun} "the dog"   {noun} "dog"
  {speed} adverb of the speed category ("slowly", "" for normal, "quickly"...)
  {speed_adj} adjective form ("slow", "fast"), {amp} / {amp_adj} the same for amplitude,
  {dir} the direction phrase ("clockwise", "to the left", "from side to side"...).
An empty phrase (the "normal" category) simply disappears, so "a dog wags its tail" is the plain
caption and "a dog wags its tail wildly quickly" states both variations.
"""

from __future__ import annotations

import re

import numpy as np

TRAIN_TEMPLATES = range(0, 6)
EVAL_TEMPLATES = range(6, 8)

_SPEED = {"slow": ["slowly"], "normal": [""], "fast": ["quickly", "rapidly", "fast"]}
_SPEED_ADJ = {"slow": ["slow"], "normal": [""], "fast": ["fast", "quick", "rapid"]}
_AMP_ADJ = {"small": ["small", "slight"], "normal": [""], "large": ["big", "large"]}
_SIDEWAYS = {"side to side": ["from side to side", "side to side", "left and right"],
             "back and forth": ["back and forth", "forward and backward"],
             "up and down": ["up and down", "vertically"]}
_ROTATION = {"clockwise": ["clockwise"], "counterclockwise": ["counterclockwise", "anticlockwise"]}
_DIR4 = {"forward": ["forward"], "backward": ["backward", "backwards"],
         "left": ["to the left", "to its left"], "right": ["to the right", "to its right"]}
_TRAVEL = {"forward": ["forward", "ahead"], "backward": ["backward", "backwards"],
           "in place": ["in place", "on the spot"]}
_GENTLE_WILD = {"small": ["gently", "a little"], "normal": [""], "large": ["wildly", "vigorously"]}
_LITTLE_LOT = {"small": ["slightly", "a little"], "normal": [""], "large": ["strongly", "a lot"]}

# family -> (templates, slot vocabularies). Vocabulary keys: speed, speed_adj, amp, amp_adj, dir.
CAPTIONS: dict[str, tuple[list[str], dict]] = {
    "flap_wings": ([
        "{a_noun} flaps its wings {amp} {speed}",
        "{the_noun} is flapping its wings {amp} {speed}",
        "{a_noun} beats its wings {amp} {speed}",
        "{the_noun} flapping its wings up and down {amp} {speed}",
        "{a_noun} moves both wings up and down {amp} {speed}",
        "{noun} wings flapping {amp} {speed}",
        "{a_noun} making {speed_adj} {amp_adj} wing beats",
        "the wings of {the_noun} go up and down {amp} {speed}",
    ], {"amp": {"small": ["gently", "a little"], "normal": [""], "large": ["wildly", "hard", "widely"]}}),
    "wag_tail": ([
        "{a_noun} wags its tail {amp} {speed}",
        "{the_noun} is wagging its tail {amp} {speed}",
        "{a_noun} swings its tail from side to side {amp} {speed}",
        "{the_noun} wagging its tail {amp} {speed}",
        "{a_noun} moves its tail left and right {amp} {speed}",
        "{noun} tail wagging {amp} {speed}",
        "{a_noun} with a {speed_adj} {amp_adj} tail wag",
        "the tail of {the_noun} sweeps back and forth {amp} {speed}",
    ], {"amp": _GENTLE_WILD}),
    "walk": ([
        "{a_noun} {verb} {dir} {amp}",
        "{the_noun} is {ving} {dir} {amp}",
        "{a_noun} {ving} {dir} {amp}",
        "{the_noun} {verb} {dir} {amp}, moving its legs",
        "walk cycle: {a_noun} {verb} {dir} {amp}",
        "{a_noun} stepping {dir} {speed} {amp}",
        "{the_noun} goes {dir} on foot {speed} {amp}",
        "{a_noun} moving its legs in a {speed_adj} walking cycle {dir}",
    ], {"verb": {"slow": ["walks slowly", "strolls"], "normal": ["walks"],
                 "fast": ["runs", "trots", "walks quickly"]},
        "ving": {"slow": ["walking slowly", "strolling"], "normal": ["walking"],
                 "fast": ["running", "trotting", "jogging"]},
        "dir": _TRAVEL,
        "amp": {"small": ["with small steps", "with short strides"], "normal": [""],
                "large": ["with big steps", "with long strides"]}}),
    "wave_arm": ([
        "{a_noun} waves its {dir} arm {amp} {speed}",
        "{the_noun} is waving the {dir} hand {amp} {speed}",
        "{a_noun} raises its {dir} arm and waves {amp} {speed}",
        "{the_noun} waving hello with the {dir} hand {amp} {speed}",
        "{a_noun} lifts the {dir} arm and waves it {amp} {speed}",
        "{the_noun} waves {amp} {speed} with its {dir} arm",
        "{a_noun} greeting someone with a {speed_adj} wave of the {dir} hand",
        "the {dir} arm of {the_noun} goes up and waves {amp} {speed}",
    ], {"dir": {"left": ["left"], "right": ["right"]},
        "amp": {"small": ["gently", "a little"], "normal": [""], "large": ["energetically", "widely"]}}),
    "raise_arms": ([
        "{a_noun} raises both arms {amp} {speed}",
        "{the_noun} is lifting its arms {amp} {speed}",
        "{a_noun} puts its arms up {amp} {speed} and lowers them",
        "{the_noun} raising both arms {amp} {speed}",
        "{a_noun} lifts its arms {amp} and brings them down {speed}",
        "{the_noun} throws its arms up {amp} {speed}",
        "{a_noun} with both arms going up {amp} {speed}",
        "{the_noun} does a {speed_adj} arm raise {amp}",
    ], {"speed": {"normal": ["", "once"], "fast": ["twice", "two times"]},
        "speed_adj": {"normal": ["single"], "fast": ["double"]},
        "amp": {"small": ["to shoulder height"], "normal": [""],
                "large": ["high above its head", "all the way up"]}}),
    "nod_head": ([
        "{a_noun} nods its head {amp} {speed}",
        "{the_noun} is nodding {amp} {speed}",
        "{a_noun} nods yes {amp} {speed}",
        "{the_noun} moves its head up and down {amp} {speed}",
        "{a_noun} nodding its head {amp} {speed}",
        "{the_noun} bobs its head down and up {amp} {speed}",
        "{a_noun} gives a {speed_adj} {amp_adj} nod",
        "the head of {the_noun} tips forward and back {amp} {speed}",
    ], {"amp": {"small": ["slightly", "a little"], "normal": [""], "large": ["deeply", "strongly"]}}),
    "shake_head": ([
        "{a_noun} shakes its head {amp} {speed}",
        "{the_noun} is shaking its head {amp} {speed}",
        "{a_noun} shakes its head no {amp} {speed}",
        "{the_noun} turns its head left and right {amp} {speed}",
        "{a_noun} shaking its head from side to side {amp} {speed}",
        "{the_noun} swivels its head side to side {amp} {speed}",
        "{a_noun} gives a {speed_adj} {amp_adj} head shake",
        "the head of {the_noun} turns back and forth {amp} {speed}",
    ], {"amp": {"small": ["slightly", "a little"], "normal": [""], "large": ["strongly", "widely"]}}),
    "swim": ([
        "{a_noun} swims {dir} {amp} {speed}",
        "{the_noun} is swimming {dir} {amp} {speed}",
        "{a_noun} swims {dir} {speed}, its body undulating {amp}",
        "{the_noun} swimming {dir} {amp} {speed}",
        "{a_noun} undulates its body and tail {amp} {speed} as it swims {dir}",
        "{the_noun} paddles {dir} with its tail {amp} {speed}",
        "{a_noun} moving through the water {dir} {speed} with {amp_adj} tail strokes",
        "side to side swimming motion of {a_noun} {dir} {speed}",
    ], {"dir": {"forward": ["forward", "ahead"], "in place": ["in place", "on the spot"]},
        "amp": {"small": ["gently"], "normal": [""], "large": ["powerfully", "vigorously"]}}),
    "slither": ([
        "{a_noun} slithers {dir} {amp} {speed}",
        "{the_noun} is slithering {dir} {amp} {speed}",
        "{a_noun} slides {dir} in waves {amp} {speed}",
        "{the_noun} slithering along the ground {dir} {amp} {speed}",
        "{a_noun} crawls {dir} with a wavy body {amp} {speed}",
        "{the_noun} wriggles {dir} {amp} {speed}",
        "{a_noun} moving like a snake {dir} {speed} {amp}",
        "serpentine motion of {the_noun} {dir} {speed}",
    ], {"dir": {"forward": ["forward", "ahead"], "in place": ["in place", "on the spot"]},
        "amp": {"small": ["with small curves", "gently"], "normal": [""],
                "large": ["with wide curves", "in big s-curves"]}}),
    "rear_up": ([
        "{a_noun} rears up {amp} {speed}",
        "{the_noun} is rearing up on its hind legs {amp} {speed}",
        "{a_noun} stands up on its back legs {amp} {speed}",
        "{the_noun} lifts its front legs off the ground {amp} {speed}",
        "{a_noun} rearing {amp} {speed}",
        "{the_noun} raises its front body {amp} {speed}",
        "{a_noun} balancing on its hind legs {speed}, front raised {amp}",
        "{the_noun} pushes its front up {amp} {speed} on the hind legs",
    ], {"speed": {"slow": ["slowly"], "normal": [""], "fast": ["twice", "quickly twice"]},
        "amp": {"small": ["a little", "slightly"], "normal": [""], "large": ["high", "tall"]}}),
    "jump": ([
        "{a_noun} jumps {amp} {dir} {speed}",
        "{the_noun} is jumping {amp} {dir} {speed}",
        "{a_noun} leaps {amp} {dir} {speed}",
        "{the_noun} hops {dir} {amp} {speed}",
        "{a_noun} jumping {dir} {amp} {speed}",
        "{the_noun} springs into the air {amp} {dir} {speed}",
        "{a_noun} does a {amp_adj} jump {dir} {speed}",
        "a {amp_adj} leap {dir} by {the_noun} {speed}",
    ], {"speed": {"normal": ["", "once"], "fast": ["twice", "two times"]},
        "dir": {"up": ["up", "straight up", "in place"], **_DIR4},
        "amp": {"small": ["a little", "low"], "normal": [""], "large": ["high"]},
        "amp_adj": {"small": ["small", "low"], "normal": [""], "large": ["high", "big"]}}),
    "bounce": ([
        "{a_noun} bounces {amp} {speed}",
        "{the_noun} is bouncing up and down {amp} {speed}",
        "{a_noun} bounces like a ball {amp} {speed}",
        "{the_noun} bouncing {amp} {speed}",
        "{a_noun} keeps bouncing off the ground {amp} {speed}",
        "{the_noun} bounces repeatedly {amp} {speed}",
        "{a_noun} doing {speed_adj} {amp_adj} bounces",
        "{the_noun} hits the ground and springs back up {amp} {speed}",
    ], {"amp": {"small": ["a little", "low"], "normal": [""], "large": ["high"]},
        "amp_adj": {"small": ["small", "low"], "normal": [""], "large": ["high", "big"]}}),
    "spin": ([
        "{a_noun} spins {speed} {dir}",
        "{the_noun} is spinning {dir} {speed}",
        "{a_noun} rotates {dir} {speed}",
        "{the_noun} turns around {dir} {speed}",
        "{a_noun} spinning in place {dir} {speed}",
        "{the_noun} twirls {dir} {speed}",
        "{a_noun} doing a {speed_adj} {dir} spin",
        "{the_noun} revolves around its vertical axis {dir} {speed}",
    ], {"dir": _ROTATION}),
    "sway": ([
        "{a_noun} sways {dir} {amp} {speed}",
        "{the_noun} is swaying {dir} {amp} {speed}",
        "{a_noun} rocks {dir} {amp} {speed}",
        "{the_noun} swaying {dir} {amp} {speed}",
        "{a_noun} leans {dir} {amp} {speed}",
        "{the_noun} tilts {dir} {amp} {speed}",
        "{a_noun} with a {speed_adj} {amp_adj} sway {dir}",
        "{the_noun} pivots on its base {dir} {amp} {speed}",
    ], {"dir": _SIDEWAYS, "amp": _LITTLE_LOT}),
    "shake": ([
        "{a_noun} shakes {dir} {amp} {speed}",
        "{the_noun} is shaking {amp} {dir} {speed}",
        "{a_noun} vibrates {dir} {amp} {speed}",
        "{the_noun} trembles {dir} {amp} {speed}",
        "{a_noun} shaking {dir} {amp} {speed}",
        "{the_noun} jitters {dir} {amp} {speed}",
        "{a_noun} quivers {dir} {amp} {speed}",
        "{the_noun} with a {amp_adj} {speed_adj} shake {dir}",
    ], {"dir": _SIDEWAYS, "amp": {"small": ["slightly", "a little"], "normal": [""],
                                  "large": ["violently", "hard"]}}),
    "squash_stretch": ([
        "{a_noun} squashes and stretches {amp} {speed}",
        "{the_noun} is squashing and stretching {amp} {speed}",
        "{a_noun} squishes down and stretches up {amp} {speed}",
        "{the_noun} compresses and extends {amp} {speed}",
        "{a_noun} squashing and stretching {amp} {speed}",
        "{the_noun} flattens and then stretches tall {amp} {speed}",
        "{a_noun} doing {speed_adj} {amp_adj} squash and stretch",
        "{the_noun} gets squished and elongated {amp} {speed}",
    ], {"amp": _LITTLE_LOT}),
    "twist": ([
        "{a_noun} twists {dir} {amp} {speed}",
        "{the_noun} is twisting {dir} {amp} {speed}",
        "{a_noun} twists around its vertical axis {dir} {amp} {speed}",
        "{the_noun} twisting {dir} {amp} {speed}",
        "{a_noun} wrings itself {dir} {amp} {speed}",
        "{the_noun} twists {dir} and untwists {amp} {speed}",
        "{a_noun} with a {speed_adj} {amp_adj} {dir} twist",
        "the top of {the_noun} turns {dir} {amp} {speed} while its base stays put",
    ], {"dir": _ROTATION, "amp": _LITTLE_LOT}),
    "bend": ([
        "{a_noun} bends {dir} {amp} {speed}",
        "{the_noun} is bending {dir} {amp} {speed}",
        "{a_noun} bends over {dir} {amp} {speed}",
        "{the_noun} curves {dir} {amp} {speed}",
        "{a_noun} bending {dir} {amp} {speed}",
        "{the_noun} bows {dir} {amp} {speed}",
        "{a_noun} does a {speed_adj} {amp_adj} bend {dir}",
        "{the_noun} flexes its body {dir} {amp} {speed}",
    ], {"dir": _DIR4, "amp": {"small": ["slightly", "a little"], "normal": [""],
                              "large": ["deeply", "all the way"]}}),
    "pulse": ([
        "{a_noun} pulses {amp} {speed}",
        "{the_noun} is breathing {amp} {speed}",
        "{a_noun} expands and contracts {amp} {speed}",
        "{the_noun} pulsating {amp} {speed}",
        "{a_noun} inflates and deflates {amp} {speed}",
        "{the_noun} throbs {amp} {speed}",
        "{a_noun} swelling and shrinking back {amp} {speed}",
        "{the_noun} with a {speed_adj} {amp_adj} heartbeat pulse",
    ], {"amp": {"small": ["slightly", "gently"], "normal": [""], "large": ["strongly", "a lot"]}}),
    "wobble": ([
        "{a_noun} wobbles {dir} {amp} {speed}",
        "{the_noun} is wobbling {dir} {amp} {speed}",
        "{a_noun} jiggles like jelly {dir} {amp} {speed}",
        "{the_noun} wobbling {dir} {amp} {speed}",
        "{a_noun} wiggles like jello {dir} {amp} {speed}",
        "{the_noun} jiggles {dir} {amp} {speed}",
        "{a_noun} with a {speed_adj} {amp_adj} jelly wobble {dir}",
        "{the_noun} quivers like pudding {dir} {amp} {speed}",
    ], {"dir": _SIDEWAYS, "amp": _LITTLE_LOT}),
    "float_up": ([
        "{a_noun} floats up {amp} {speed}",
        "{the_noun} is floating upward {amp} {speed}",
        "{a_noun} rises into the air {amp} {speed}",
        "{the_noun} levitates {amp} {speed}",
        "{a_noun} drifting up {amp} {speed}",
        "{the_noun} lifts off the ground {amp} {speed}",
        "{a_noun} ascends {amp} {speed}",
        "{the_noun} hovers up into the sky {amp} {speed}",
    ], {"amp": {"small": ["a little", "slightly"], "normal": [""], "large": ["high", "far up"]}}),
    "sink": ([
        "{a_noun} sinks {amp} {speed}",
        "{the_noun} is sinking into the ground {amp} {speed}",
        "{a_noun} sinks down {amp} {speed}",
        "{the_noun} goes down into the floor {amp} {speed}",
        "{a_noun} sinking {amp} {speed}",
        "{the_noun} descends {amp} {speed}",
        "{a_noun} drops down below the ground {amp} {speed}",
        "{the_noun} submerges {amp} {speed}",
    ], {"amp": {"small": ["a little", "slightly"], "normal": [""], "large": ["deep", "all the way down"]}}),
    "grow": ([
        "{a_noun} grows {amp} {speed}",
        "{the_noun} is growing bigger {amp} {speed}",
        "{a_noun} gets larger {amp} {speed}",
        "{the_noun} scales up {amp} {speed}",
        "{a_noun} growing {amp} {speed}",
        "{the_noun} expands in size {amp} {speed}",
        "{a_noun} enlarges {amp} {speed}",
        "{the_noun} becomes bigger {amp} {speed}",
    ], {"amp": {"small": ["a little", "slightly"], "normal": [""], "large": ["a lot", "to twice its size"]}}),
    "shrink": ([
        "{a_noun} shrinks {amp} {speed}",
        "{the_noun} is shrinking {amp} {speed}",
        "{a_noun} gets smaller {amp} {speed}",
        "{the_noun} scales down {amp} {speed}",
        "{a_noun} shrinking {amp} {speed}",
        "{the_noun} contracts in size {amp} {speed}",
        "{a_noun} dwindles {amp} {speed}",
        "{the_noun} becomes smaller {amp} {speed}",
    ], {"amp": {"small": ["a little", "slightly"], "normal": [""], "large": ["a lot", "to a tiny size"]}}),
    "fall_over": ([
        "{a_noun} falls over {dir} {amp} {speed}",
        "{the_noun} is falling over {dir} {amp} {speed}",
        "{a_noun} topples {dir} {amp} {speed}",
        "{the_noun} tips over {dir} {amp} {speed}",
        "{a_noun} falling down {dir} {amp} {speed}",
        "{the_noun} keels over {dir} {amp} {speed}",
        "{a_noun} collapses {dir} {amp} {speed}",
        "{the_noun} loses its balance and falls {dir} {amp} {speed}",
    ], {"dir": _DIR4, "amp": {"small": ["halfway", "partly"], "normal": [""]}}),
    "melt": ([
        "{a_noun} melts {amp} {speed}",
        "{the_noun} is melting {amp} {speed}",
        "{a_noun} melts down {amp} {speed}",
        "{the_noun} melting {amp} {speed}",
        "{a_noun} droops and melts {amp} {speed}",
        "{the_noun} slumps and spreads out {amp} {speed}",
        "{a_noun} liquefies {amp} {speed}",
        "{the_noun} sags to the floor like wax {amp} {speed}",
    ], {"amp": {"small": ["partly", "a little"], "normal": [""], "large": ["completely", "into a puddle"]}}),
    "roll": ([
        "{a_noun} rolls {dir} {speed}",
        "{the_noun} is rolling {dir} {speed}",
        "{a_noun} rolls over {dir} {speed}",
        "{the_noun} rolling {dir} {speed}",
        "{a_noun} tumbles {dir} {speed}",
        "{the_noun} rolls along the ground {dir} {speed}",
        "{a_noun} does a {speed_adj} roll {dir}",
        "{the_noun} somersaults {dir} {speed}",
    ], {"dir": _DIR4}),
}

_DEFAULTS = {"speed": _SPEED, "speed_adj": _SPEED_ADJ, "amp": _LITTLE_LOT, "amp_adj": _AMP_ADJ}
_SLOT_AXIS = {"speed": "speed", "speed_adj": "speed", "verb": "speed", "ving": "speed",
              "amp": "amplitude", "amp_adj": "amplitude", "dir": "direction"}
_SLOT_RE = re.compile(r"\{(\w+)\}")


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,:])", r"\1", text)
    text = re.sub(r",\s*$", "", text.strip())
    text = re.sub(r"\s*,\s*,", ",", text)
    return text.strip()


def render(family: str, template_index: int, noun: str, params: dict,
           rng: np.random.Generator) -> str:
    """One caption: template `template_index` of `family` with the noun and parameter phrases.

    `params` holds the categories: {"speed": ..., "amplitude": ..., "direction": ...}.
    """
    templates, vocab = CAPTIONS[family]
    template = templates[template_index]

    def fill(match):
        slot = match.group(1)
        if slot == "a_noun":
            return f"{article(noun)} {noun}"
        if slot == "the_noun":
            return f"the {noun}"
        if slot == "noun":
            return noun
        table = vocab.get(slot, _DEFAULTS.get(slot))
        if table is None:
            raise KeyError(f"caption template of {family} uses unknown slot {slot}")
        choices = table.get(params[_SLOT_AXIS[slot]], [""])
        return str(choices[int(rng.integers(len(choices)))])

    return _clean(_SLOT_RE.sub(fill, template))


def captions_for(family: str, noun: str, params: dict, split: str,
                 rng: np.random.Generator) -> list[str]:
    """All paraphrases of the split: 6 training templates or the 2 held-out evaluation ones."""
    indices = TRAIN_TEMPLATES if split == "train" else EVAL_TEMPLATES
    return [render(family, i, noun, params, rng) for i in indices]


# ---------------------------------------------------------------------------------------------
# DeformingThings4D clip names
# ---------------------------------------------------------------------------------------------

# first action word -> third-person phrase (anything else falls back to "a <animal> <action>")
_VERBS = {
    "jump": "jumps", "run": "runs", "walk": "walks", "trot": "trots", "gallop": "gallops",
    "attack": "attacks", "bite": "bites", "die": "dies", "death": "dies", "dead": "dies",
    "idle": "stands idle", "eat": "eats", "drink": "drinks", "fly": "flies", "swim": "swims",
    "sit": "sits", "lie": "lies down", "sleep": "sleeps", "roar": "roars", "howl": "howls",
    "bark": "barks", "turn": "turns", "look": "looks", "fall": "falls", "rest": "rests",
    "hit": "is hit", "get": "gets", "stand": "stands", "shake": "shakes", "scratch": "scratches",
    "sniff": "sniffs", "kick": "kicks", "hop": "hops", "crawl": "crawls", "dance": "dances",
    "wave": "waves", "swing": "swings", "roll": "rolls", "spin": "spins", "climb": "climbs",
    "dodge": "dodges", "play": "plays", "pounce": "pounces", "rise": "rises", "yawn": "yawns",
    "hurt": "gets hurt", "stretch": "stretches", "lick": "licks", "dig": "digs", "land": "lands",
    "takeoff": "takes off", "glide": "glides", "flap": "flaps its wings", "peck": "pecks",
}
# animal prefixes in DeformingThings4D names that are not plain English words
_ANIMALS = {"canie": "dog", "huskydog": "husky"}


def _words(text: str) -> list[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = re.sub(r"[^A-Za-z]+", " ", text)
    return [w.lower() for w in text.split()]


def caption_from_clip_name(name: str) -> str:
    """"bear3EP_Jump" -> "a bear jumps"; "deer2MB_GetHit" -> "a deer gets hit".

    The animal is the leading lowercase word of the part before the first underscore (the rest
    is DeformingThings4D's identity code); the action is the rest, split into words. A known first
    action word is conjugated from a small verb table; otherwise the caption is
    "a <animal> <action in lowercase>".
    """
    animal_raw, _, action_raw = name.partition("_")
    match = re.match(r"[A-Za-z][a-z]*", animal_raw)
    animal = match.group(0).lower() if match else "creature"
    animal = _ANIMALS.get(animal, animal)
    words = _words(action_raw)
    if not words:
        return f"{article(animal)} {animal} moves"
    head, rest = words[0], words[1:]
    if head == "get" and rest:  # "GetHit" -> "gets hit"
        phrase = " ".join(["gets"] + rest)
    elif head in _VERBS:
        phrase = " ".join([_VERBS[head]] + rest)
    else:
        phrase = " ".join(words)
    return f"{article(animal)} {animal} {phrase}"

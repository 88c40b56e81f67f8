"""Captions: paraphrase templates for the procedural motion families, and captions derived from
DeformingThings4D clip names.

Procedural captions
-------------------
Each family has 8 templates in `CAPTIONS`. Templates 0-5 are for training, templates 6-7 are
reserved for evaluation (`EVAL_TEMPLATES`): an evaluation caption is a sentence shape the model
never saw, so text-motion accuracy on it measures understanding, not memorised strings.

`MORE_TRAIN_TEMPLATES` widens the training phrasing (templates 8 and up): six templates per
family taught a small text pathway to match key words, so it failed on unseen sentence shapes.
They were drafted from the training templates alone, yet six drafts came out identical to
evaluation templates, so every draft was filtered: none uses a word that appears only in the
evaluation templates (a test keeps it so), and none shares half or more of its words with an
evaluation template of its family. Every word that made a held-out caption new is still new to
the model.

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

EVAL_TEMPLATES = (6, 7)

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

MORE_TRAIN_TEMPLATES: dict[str, list[str]] = {
    "flap_wings": [
        "make {the_noun} flap its wings {amp} {speed}",
        "{the_noun}'s wings flutter {amp} {speed}",
        "{a_noun} flutters its wings {amp} {speed}",
        "{the_noun} spreads its wings and flaps them {amp} {speed}",
        "{noun} with wings beating {amp} {speed}",
        "{a_noun} pumping its wings {amp} {speed}",
        "{the_noun} raises and lowers its wings {amp} {speed}",
    ],
    "wag_tail": [
        "{the_noun}'s tail wags {amp} {speed}",
        "{a_noun} flicks its tail from side to side {amp} {speed}",
        "{noun} swishing its tail {amp} {speed}",
        "{a_noun} wiggles its tail {amp} {speed}",
        "{the_noun} stands still and wags just its tail {amp} {speed}",
    ],
    "walk": [
        "make {the_noun} walk {dir} {speed} {amp}",
        "{a_noun} that {verb} {dir} {amp}",
        "{the_noun} moves {dir} on its legs {speed} {amp}",
        "{the_noun} paces {dir} {speed} {amp}",
        "{a_noun} takes steps {dir} {speed} {amp}",
        "{noun} {ving} {dir} {amp}, legs alternating",
        "animate {the_noun} {ving} {dir} {amp}",
        "{a_noun} marching {dir} {speed} {amp}",
        "a gait cycle where {the_noun} {verb} {dir} {amp}",
    ],
    "wave_arm": [
        "{the_noun}'s {dir} hand waves {amp} {speed}",
        "{the_noun} waving goodbye with its {dir} hand {amp} {speed}",
        "{a_noun} holds up its {dir} hand and waves it side to side {amp} {speed}",
        "{noun} {dir} arm waving {amp} {speed}",
        "{a_noun} signals with its {dir} arm, waving it {amp} {speed}",
    ],
    "raise_arms": [
        "{a_noun} puts both hands up {amp} {speed}",
        "{the_noun} reaches both arms upward {amp} {speed}",
        "{a_noun} hoists both arms {amp} {speed}",
        "{noun} raising its hands in the air {amp} {speed}",
    ],
    "nod_head": [
        "{the_noun}'s head bobs up and down {amp} {speed}",
        "{a_noun} nods in agreement {amp} {speed}",
        "{a_noun} lowers and raises its head {amp} {speed}",
        "{noun} nodding yes {amp} {speed}",
        "{a_noun} dips its chin down and up {amp} {speed}",
    ],
    "shake_head": [
        "{the_noun}'s head turns side to side {amp} {speed}",
        "{the_noun} refuses, shaking its head {amp} {speed}",
        "{a_noun} rotates its head left and right {amp} {speed}",
        "{the_noun} shakes its head in disagreement {amp} {speed}",
        "{a_noun} turns its head from left to right and back {amp} {speed}",
        "{the_noun} looks left, then right, shaking its head {amp} {speed}",
    ],
    "swim": [
        "make {the_noun} swim {dir} {amp} {speed}",
        "{the_noun} propels itself {dir} underwater {amp} {speed}",
        "{a_noun} kicks its tail and swims {dir} {amp} {speed}",
        "{noun} swimming {dir} {amp} {speed} with its body rippling",
        "{a_noun} cruises {dir} underwater, its tail sweeping {amp} {speed}",
    ],
    "slither": [
        "{the_noun} snakes {dir} along the ground {amp} {speed}",
        "make {the_noun} slither {dir} {amp} {speed}",
        "{the_noun} crawls on its belly {dir} {amp} {speed}",
        "{the_noun} winds its body along the ground {dir} {amp} {speed}",
        "{a_noun} slides {dir} on the ground, its body curving side to side {amp} {speed}",
        "{noun} wriggling along the floor {dir} {amp} {speed}",
    ],
    "rear_up": [
        "make {the_noun} rear up {amp} {speed}",
        "{a_noun} lifts its forelegs and rears {amp} {speed}",
        "{the_noun} rears back on its hind legs {amp} {speed}",
        "{noun} rearing up {amp} {speed}",
        "{the_noun} raises its front half off the ground {amp} {speed}",
    ],
    "jump": [
        "{the_noun} leaps into the air {dir} {amp} {speed}",
        "{noun} jumping {dir} {amp} {speed}",
        "{a_noun} crouches and jumps {dir} {amp} {speed}",
        "{the_noun} springs {dir} off its feet {amp} {speed}",
        "{a_noun} launches itself {dir} {amp} {speed}",
    ],
    "bounce": [
        "{the_noun} bobs up and down like a rubber ball {amp} {speed}",
        "make {the_noun} bounce {amp} {speed}",
        "{the_noun} keeps springing up off the floor {amp} {speed}",
        "{noun} bouncing up and down {amp} {speed}",
        "{a_noun} rebounding off the floor {amp} {speed}",
        "{the_noun} boings up and down {amp} {speed}",
        "{a_noun} bounces on the spot {amp} {speed}",
    ],
    "spin": [
        "{the_noun} rotates in place {dir} {speed}",
        "{a_noun} turns around and around {dir} {speed}",
        "{the_noun} whirls around {dir} {speed}",
        "{the_noun} pirouettes {dir} {speed}",
        "{the_noun} rotating its whole body {dir} {speed}",
        "{a_noun} swivels all the way around {dir} {speed}",
    ],
    "sway": [
        "{a_noun} leaning {dir} {amp} {speed} in a smooth rhythm",
        "{the_noun} sways {dir} like a tree in the wind {amp} {speed}",
        "{a_noun} rocking {dir} {amp} {speed}",
        "{a_noun} swings its body {dir} {amp} {speed}",
        "{a_noun} sways its body {dir} {amp} {speed} as if dancing",
        "{the_noun} rocks its whole body {dir} {amp} {speed}",
        "{noun} swaying {dir} like a pendulum {amp} {speed}",
    ],
    "shake": [
        "{a_noun} shivers all over {dir} {amp} {speed}",
        "{the_noun}'s whole body shakes {dir} {amp} {speed}",
        "{a_noun} rattles {dir} {amp} {speed}",
        "{noun} trembling {dir} {amp} {speed}",
        "{the_noun} shudders {dir} {amp} {speed}",
        "{a_noun} shakes its entire body {dir} {amp} {speed}",
        "{the_noun} buzzes {dir} like a phone on vibrate {amp} {speed}",
    ],
    "squash_stretch": [
        "{the_noun} squeezes flat then springs up tall {amp} {speed}",
        "{a_noun} alternately flattening and elongating {amp} {speed}",
        "{noun} squishing and stretching {amp} {speed}",
        "{a_noun} flattens into a squat shape and then pulls tall and thin {amp} {speed}",
        "{the_noun} scrunches down and stretches back up {amp} {speed}",
    ],
    "twist": [
        "{the_noun} wrings its torso {dir} {amp} {speed}",
        "{noun} twisting its body {dir} {amp} {speed}",
        "{a_noun} twists at the waist {dir} {amp} {speed}",
        "{the_noun} twists {dir} and twists back {amp} {speed}",
        "{a_noun} winds up its body {dir} and unwinds {amp} {speed}",
    ],
    "bend": [
        "{the_noun} bends its upper body {dir} {amp} {speed}",
        "{a_noun} arches {dir} {amp} {speed}",
        "{noun} bending at the middle {dir} {amp} {speed}",
        "{the_noun} folds over {dir} {amp} {speed}",
        "{a_noun} bends its spine {dir} {amp} {speed}",
        "{the_noun} bends {dir} and straightens back up {amp} {speed}",
    ],
    "pulse": [
        "{the_noun} swells and relaxes rhythmically {amp} {speed}",
        "{a_noun} beats like a heart {amp} {speed}",
        "{a_noun} breathes in and out {amp} {speed}",
        "{noun} throbbing {amp} {speed}",
        "{the_noun} puffs up and settles back repeatedly {amp} {speed}",
        "{a_noun} swells and deflates in a steady rhythm {amp} {speed}",
        "{a_noun} with a breathing idle, its body expanding {amp} {speed}",
    ],
    "wobble": [
        "{a_noun} wobbling like gelatin {dir} {amp} {speed}",
        "{the_noun}'s soft body jiggles loosely {dir} {amp} {speed}",
        "{noun} wobbling like a jelly {dir} {amp} {speed}",
        "{the_noun} wiggles its soft body {dir} {amp} {speed}",
    ],
    "float_up": [
        "make {the_noun} float upward {amp} {speed}",
        "{the_noun} rises up off the floor {amp} {speed}",
        "{noun} levitating upward {amp} {speed}",
        "{the_noun} lifts into the air as if weightless {amp} {speed}",
        "{the_noun} rises like a balloon {amp} {speed}",
        "{a_noun} levitates up from the ground {amp} {speed}",
    ],
    "sink": [
        "make {the_noun} sink {amp} {speed}",
        "{the_noun} sinks into the floor {amp} {speed}",
        "{the_noun} lowers itself into the ground {amp} {speed}",
        "{noun} sinking down into the floor {amp} {speed}",
        "{a_noun} sinks as if into quicksand {amp} {speed}",
        "{the_noun} slides downward into the ground {amp} {speed}",
    ],
    "grow": [
        "make {the_noun} grow {amp} {speed}",
        "{the_noun} gets bigger {amp} {speed}",
        "{a_noun} swells in size {amp} {speed}",
        "{a_noun} increases in size {amp} {speed}",
        "{noun} growing larger {amp} {speed}",
        "{the_noun} scales itself up {amp} {speed}",
        "{the_noun} balloons up in size {amp} {speed}",
    ],
    "shrink": [
        "make {the_noun} shrink {amp} {speed}",
        "{a_noun} decreases in size {amp} {speed}",
        "{a_noun} scales itself down {amp} {speed}",
        "{noun} shrinking down {amp} {speed}",
        "{the_noun} reduces its size {amp} {speed}",
        "{a_noun} gets smaller and smaller {amp} {speed}",
        "{the_noun} diminishes in size {amp} {speed}",
    ],
    "fall_over": [
        "make {the_noun} fall over {dir} {amp} {speed}",
        "{a_noun} topples {dir} to the ground {amp} {speed}",
        "{the_noun} falls {dir} like a felled tree {amp} {speed}",
        "{noun} toppling over {dir} {amp} {speed}",
        "{a_noun} tips and falls {dir} {amp} {speed}",
        "{the_noun} crashes down {dir} {amp} {speed}",
        "{a_noun} pitches over {dir} {amp} {speed}",
        "{the_noun} overbalances and falls {dir} {amp} {speed}",
    ],
    "melt": [
        "make {the_noun} melt {amp} {speed}",
        "{a_noun} melts away {amp} {speed}",
        "{noun} melting down {amp} {speed}",
        "{a_noun} melts like ice cream in the sun {amp} {speed}",
        "{the_noun} slumps down as it melts {amp} {speed}",
        "{a_noun} deforms and flows downward as it melts {amp} {speed}",
    ],
    "roll": [
        "{the_noun} rolls like a barrel {dir} {speed}",
        "{the_noun} turns over and over {dir} {speed}",
        "{noun} rolling over {dir} {speed}",
        "{a_noun} rolls across the floor {dir} {speed}",
        "{the_noun} rolls its whole body over {dir} {speed}",
        "{a_noun} goes rolling {dir} {speed}",
    ],
}

# Generator version 3. The shipped model read training wording well (91% top-1) but held-out
# wording poorly (74%): it had learned the training verbs, not what they mean. These templates
# add noun-phrase sentence shapes ("performs a quick hop", "with a slow throb") and synonyms, under
# the same rules as `MORE_TRAIN_TEMPLATES` (a test checks them the same way). Measured: a flow
# fine-tuned on them follows these phrasings but no more of the held-out ones, whose verbs the
# MiniLM encoder does not place near their meaning (research/probes/probe_text_encoder.py).
WIDER_TRAIN_TEMPLATES: dict[str, list[str]] = {
    "flap_wings": [
        "{a_noun} performs {speed_adj} {amp_adj} wingbeats",
        "{the_noun} takes flight, its wings pumping {amp} {speed}",
        "{the_noun} works its wings up and down {amp} {speed}",
    ],
    "wag_tail": [
        "{a_noun} swishes its tail around {amp} {speed}",
        "{the_noun} excitedly waggles its tail {amp} {speed}",
        "{noun} tail swinging left and right {amp} {speed}",
    ],
    "walk": [
        "{a_noun} takes a {speed_adj} stroll {dir} {amp}",
        "{the_noun} strides {dir} {speed} {amp}",
        "locomotion cycle: {the_noun} {verb} {dir} {amp}",
    ],
    "wave_arm": [
        "{a_noun} says hi with its {dir} hand {amp} {speed}",
        "{the_noun} hails a friend with its {dir} arm {amp} {speed}",
        "{a_noun} waggles its lifted {dir} hand {amp} {speed}",
    ],
    "raise_arms": [
        "{a_noun} performs a {speed_adj} arms-up gesture {amp}",
        "{the_noun} lifts both hands overhead {amp} {speed}",
        "{a_noun} cheers with both arms held high {amp} {speed}",
    ],
    "nod_head": [
        "{a_noun} with a {speed_adj} {amp_adj} head bob",
        "{the_noun} agrees, bobbing its head {amp} {speed}",
        "{noun} nodding along {amp} {speed}",
    ],
    "shake_head": [
        "{a_noun} signals no with its head {amp} {speed}",
        "{the_noun} swings its head left to right and back {amp} {speed}",
        "{a_noun} disagrees, turning its head from side to side {amp} {speed}",
    ],
    "swim": [
        "{a_noun} on a {speed_adj} swim {dir}",
        "{the_noun} glides {dir} underwater with {amp_adj} tail beats {speed}",
        "{a_noun} swimming laps {dir} {amp} {speed}",
    ],
    "slither": [
        "{a_noun} glides {dir} like an eel {amp} {speed}",
        "{the_noun} creeps {dir} like a worm {amp} {speed}",
        "{noun} undulating {dir} along the ground {amp} {speed}",
    ],
    "rear_up": [
        "{a_noun} performs a {speed_adj} {amp_adj} rearing move",
        "{the_noun} stands tall on its back legs {amp} {speed}",
        "{noun} rearing like a stallion {amp} {speed}",
    ],
    "jump": [
        "{a_noun} takes a {amp_adj} hop {dir} {speed}",
        "{the_noun} bounds {dir} {amp} {speed}",
        "{a_noun} performs a {amp_adj} vault {dir} {speed}",
    ],
    "bounce": [
        "{a_noun} with {speed_adj} {amp_adj} rebounds",
        "{the_noun} keeps rebounding {amp} {speed}",
        "{noun} on a trampoline, bouncing {amp} {speed}",
    ],
    "spin": [
        "{a_noun} performs a {speed_adj} {dir} rotation",
        "{the_noun} makes full turns {dir} {speed}",
        "{noun} rotating about its upright axis {dir} {speed}",
    ],
    "sway": [
        "{a_noun} with {speed_adj} {amp_adj} rocking {dir}",
        "{the_noun} teeters {dir} {amp} {speed}",
        "{noun} rocking on its feet {dir} {amp} {speed}",
    ],
    "shake": [
        "{a_noun} with {amp_adj} {speed_adj} shivers {dir}",
        "{the_noun} judders {dir} {amp} {speed}",
        "{a_noun} performs a {speed_adj} {amp_adj} tremble {dir}",
    ],
    "squash_stretch": [
        "{a_noun} performs a {speed_adj} {amp_adj} squish and extend cycle",
        "{the_noun} squats flat then shoots up tall {amp} {speed}",
        "{noun} compressing and elongating {amp} {speed}",
    ],
    "twist": [
        "{a_noun} performs a {speed_adj} {amp_adj} {dir} wring",
        "{the_noun} turns its upper half {dir} against its lower half {amp} {speed}",
        "{noun} corkscrewing {dir} {amp} {speed}",
    ],
    "bend": [
        "{a_noun} performs a {speed_adj} {amp_adj} bow {dir}",
        "{the_noun} curls its body over {dir} {amp} {speed}",
        "{a_noun} hunches {dir} {amp} {speed}",
    ],
    "pulse": [
        "{a_noun} with a {speed_adj} {amp_adj} throb",
        "{the_noun} puffs up and deflates again and again {amp} {speed}",
        "{noun} rhythmically inflating and contracting {amp} {speed}",
    ],
    "wobble": [
        "{a_noun} with a {speed_adj} {amp_adj} jiggle {dir}",
        "{the_noun} jiggles {dir} like a soft dessert {amp} {speed}",
        "{noun} quaking like jelly {dir} {amp} {speed}",
    ],
    "float_up": [
        "{a_noun} rises skyward {amp} {speed}",
        "{the_noun} performs a {speed_adj} {amp_adj} levitation",
        "{noun} climbing into the air {amp} {speed}",
    ],
    "sink": [
        "{a_noun} performs a {speed_adj} {amp_adj} descent into the ground",
        "{the_noun} vanishes into the floor {amp} {speed}",
        "{noun} dipping down into the ground {amp} {speed}",
    ],
    "grow": [
        "{a_noun} gets taller and wider {amp} {speed}",
        "{the_noun} with a {speed_adj} {amp_adj} growth spurt",
        "{the_noun} upsizes {amp} {speed}",
    ],
    "shrink": [
        "{a_noun} with a {speed_adj} {amp_adj} size reduction",
        "{the_noun} gets tinier {amp} {speed}",
        "{a_noun} shrivels {amp} {speed}",
    ],
    "fall_over": [
        "{a_noun} takes a {speed_adj} fall {dir} {amp}",
        "{the_noun} flops over {dir} {amp} {speed}",
        "{a_noun} crumples {dir} {amp} {speed}",
    ],
    "melt": [
        "{a_noun} turns into a puddle {amp} {speed}",
        "{the_noun} dissolves and runs down {amp} {speed}",
        "{a_noun} with a {speed_adj} {amp_adj} meltdown",
        "{the_noun} drips and oozes down like a candle {amp} {speed}",
    ],
    "roll": [
        "{a_noun} with a {speed_adj} tumble {dir}",
        "{the_noun} flips over and over {dir} {speed}",
        "{noun} rotating end over end {dir} {speed}",
    ],
}


def templates_of(family: str) -> list[str]:
    """Every template of a family, indexed as in the module notes (0-7, then the extra ones)."""
    return CAPTIONS[family][0] + MORE_TRAIN_TEMPLATES.get(family, []) + WIDER_TRAIN_TEMPLATES.get(family, [])


def train_templates(family: str) -> list[int]:
    """Indices of the family's training templates: all but `EVAL_TEMPLATES`."""
    return [i for i in range(len(templates_of(family))) if i not in EVAL_TEMPLATES]


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
    vocab = CAPTIONS[family][1]
    template = templates_of(family)[template_index]

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


def wording_words() -> set[str]:
    """Every word the captions use around their subject, in both splits: the templates' own words
    and those of the phrases that fill their speed, amplitude and direction slots."""
    found: set[str] = set()
    for family, (_, tables) in CAPTIONS.items():
        for template in templates_of(family):
            found.update(re.findall(r"[a-z]+", _SLOT_RE.sub(" ", template.lower())))
            for slot in _SLOT_RE.findall(template):
                for phrases in (tables.get(slot) or _DEFAULTS.get(slot) or {}).values():
                    for phrase in phrases:
                        found.update(re.findall(r"[a-z]+", phrase.lower()))
    return found


def captions_for(family: str, noun: str, params: dict, split: str,
                 rng: np.random.Generator) -> list[str]:
    """All paraphrases of the split: every training template or the 2 held-out evaluation ones."""
    indices = train_templates(family) if split == "train" else EVAL_TEMPLATES
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

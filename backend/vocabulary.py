"""The words a model learned from, and a prompt check against them.

A text encoder turns any word into something, but a flow trained on a closed set of captions
moves the mesh only for words it was taught: with the shipped model, the unseen verb
"liquefies" moves a mesh no more than "stands still" does (model card, "Wording"). An artist who
types such a word gets a mesh that barely moves and no idea why. So a model folder may carry
`vocabulary.json`, every word of the captions its flow was trained on plus the names of the
motions it was taught; a prompt whose words are all in it passes quietly, and any other word is
named in a warning that lists the motions the model does know.

Plain Python (no torch), so the check and its file test on their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from aam_seam.atomic import write_text_atomically

from .errors import CheckpointError

FILE_NAME = "vocabulary.json"
FORMAT_VERSION = 1
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case runs of letters: "The dog's tail-wag!" -> the, dog, s, tail, wag."""
    return _WORD.findall(text.lower())


def word_key(word: str) -> str:
    """The word with its inflection cut off, so "waves", "waving", "waved" and "wave" are one
    word (all "wav") and a model taught "shakes" is not said to miss "shake". Deliberately crude:
    it only has to treat a prompt's word and the vocabulary's words alike."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith("es") and w[:-2].endswith(("s", "x", "z", "ch", "sh")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2]:
        w = w[:-1]
    return w


@dataclass(frozen=True)
class Vocabulary:
    known: frozenset[str]
    motions: tuple[str, ...] = ()   # names of the motions taught, e.g. "flap wings" (may be empty)
    keys: frozenset[str] = field(init=False, repr=False, compare=False)  # word_key of every known word

    def __post_init__(self):
        object.__setattr__(self, "keys", frozenset(word_key(w) for w in self.known))

    @classmethod
    def from_captions(cls, captions: Iterable[str], families: Iterable[str | None] = ()) -> "Vocabulary":
        known = {w for caption in captions for w in words(caption)}
        motions = sorted({f.replace("_", " ") for f in families if f})
        return cls(frozenset(known), tuple(motions))

    def merged(self, other: "Vocabulary | None") -> "Vocabulary":
        """What a fine-tuned model knows: the words of its start and of its new captions."""
        if other is None:
            return self
        return Vocabulary(self.known | other.known, tuple(sorted(set(self.motions) | set(other.motions))))

    def unknown(self, prompt: str) -> list[str]:
        """The prompt's words that no training caption used in any inflection, once each, in
        prompt order."""
        return [w for w in dict.fromkeys(words(prompt)) if w not in self.known and word_key(w) not in self.keys]

    def check(self, prompt: str) -> list[str]:
        """Warnings for a prompt (empty when every word is known)."""
        unknown = self.unknown(prompt)
        if not unknown:
            return []
        quoted = ", ".join(f"'{w}'" for w in unknown)
        plural = len(unknown) > 1
        text = (f"The model never saw the word{'s' if plural else ''} {quoted} in its training captions, "
                f"so it may ignore {'them' if plural else 'it'}. If {'one of them names' if plural else 'it names'} "
                "the motion, say it with words the model knows")
        if self.motions:
            text += f"; the motions it was taught are: {', '.join(self.motions)}."
        else:
            text += f" (listed in the model folder's {FILE_NAME})."
        return [text]

    # ------------------------------------------------------------------ the file next to the weights

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "motions": list(self.motions), "words": sorted(self.known)}

    @classmethod
    def from_json(cls, data: dict, source: str = FILE_NAME) -> "Vocabulary":
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise ValueError(f"{source}: format_version {version!r} is not {FORMAT_VERSION}; "
                             "re-create the file with `python -m backend vocabulary`.")
        known, motions = data.get("words"), data.get("motions", [])
        if not (isinstance(known, list) and all(isinstance(w, str) for w in known)
                and isinstance(motions, list) and all(isinstance(m, str) for m in motions)):
            raise ValueError(f"{source}: 'words' and 'motions' must be lists of strings.")
        return cls(frozenset(known), tuple(motions))

    def save(self, model_dir: Path) -> Path:
        return write_text_atomically(Path(model_dir) / FILE_NAME, json.dumps(self.to_json(), indent=1) + "\n")


def load_vocabulary(model_dir: Path) -> Vocabulary | None:
    """The model folder's vocabulary, or None when it has none (e.g. the official checkpoint,
    whose CLIP text pathway was trained on far more text than any list could hold)."""
    path = Path(model_dir) / FILE_NAME
    if not path.is_file():
        return None
    try:
        return Vocabulary.from_json(json.loads(path.read_text()), str(path))
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path} is damaged ({exc}). Delete it to animate without the word check, or "
                              "write it again with `python -m backend vocabulary --model DIR --data DATASET`.") from exc

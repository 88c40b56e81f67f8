"""Which caption templates the misses of an eval run come from.

`python -m backend eval ... --clips FILE.jsonl` records every clip's prompt and what the judge
took the generated motion for; on procedural clips each prompt is one template of its family
with the slots filled in. This groups the records by template and prints, worst first, how
many of each template's clips missed and what they were judged as: a verb the model does not
know ("somersaults") misses on every clip, a motion it draws badly misses across templates.

    .venv/bin/python research/probes/misses_by_wording.py out/val.jsonl [more.jsonl ...]
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for backend

from backend.data.captions import templates_of  # noqa: E402


def template_pattern(template: str) -> re.Pattern:
    """A template as a regex over its rendered captions: slots match any text (or none), and the
    spaces around an empty slot collapse as `render` collapses them."""
    parts = re.split(r"\{\w+\}", template)
    literal = [r"\s*".join(re.escape(w) for w in part.split()) for part in parts]
    return re.compile(r"^\s*" + r"\s*(.*?)\s*".join(literal) + r"\s*$")


def template_of(family: str, prompt: str) -> int | None:
    """Index of the family's template that renders to this prompt (None: not a procedural caption).
    Where several match ("{a_noun} {verb} {dir}" matches much), the one with the most fixed text."""
    matches = [i for i, t in enumerate(templates_of(family)) if template_pattern(t).match(prompt)]
    return max(matches, key=lambda i: len(re.sub(r"\{\w+\}|\s", "", templates_of(family)[i])), default=None)


def misses_by_template(records: list[dict]) -> list[tuple[str, int | None, int, int, Counter]]:
    """(family, template index, clips, misses, judged-as counts), most missed first."""
    groups: dict[tuple[str, int | None], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["family"], template_of(r["family"], r["prompt"]))].append(r)
    rows = []
    for (family, index), clips in groups.items():
        wrong = Counter(c["judged_as"] for c in clips if c["judged_as"] != family)
        rows.append((family, index, len(clips), sum(wrong.values()), wrong))
    return sorted(rows, key=lambda r: (-r[3] / r[2], -r[3], r[0], -1 if r[1] is None else r[1]))


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit(__doc__)
    records = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    print("| family | template | clips missed | judged as |")
    print("|---|---|---:|---|")
    for family, index, n, missed, wrong in misses_by_template(records):
        if missed:
            text = templates_of(family)[index] if index is not None else "(no template matches)"
            judged = ", ".join(f"{f} {k}" for f, k in wrong.most_common())
            print(f"| {family} | {text} | {missed} of {n} | {judged} |")
    total = sum(r["judged_as"] != r["family"] for r in records)
    print(f"\n{total} of {len(records)} clips missed")


if __name__ == "__main__":
    main(sys.argv[1:])

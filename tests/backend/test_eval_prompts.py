"""`python -m backend eval-prompts` (issue 20): the subject classes are what they claim to be, a
tiny run's report is whole and sane, and bad input is one line."""

import json

import pytest

from backend import eval_prompts as ep
from backend.__main__ import main
from backend.data import creatures, procedural
from backend.data.motions import FAMILY_SPECS
from backend.model_manager import EMBEDDED_DIR
from backend.subject_reading import PART_WORDS
from backend.vocabulary import load_vocabulary, words

ISSUE_FAMILIES = ["jump", "bounce", "spin", "sway", "shake", "squash_stretch", "twist", "bend", "pulse",
                  "wobble", "float_up", "sink", "grow", "shrink", "fall_over", "melt", "roll"]
PRONOUNS = {"it", "this", "that", "something", "someone", "everything"}


def generator_nouns() -> set[str]:
    nouns = set()
    for table in (procedural._PRIMITIVE_NOUNS, procedural._COMPOSITE_NOUNS):
        nouns |= {n for names in table.values() for n in names}
    for name in dir(creatures):
        if name.endswith("_NOUNS"):
            nouns |= set(getattr(creatures, name))
    return nouns


def test_the_subject_classes_are_built_as_specified():
    vocabulary = load_vocabulary(EMBEDDED_DIR)
    assert ep.whole_body_families() == ISSUE_FAMILIES
    assert list(ep.SUBJECT_CLASSES) == ["caption", "unseen", "part", "none", "pronoun"]
    members = {c: set(subjects) for c, (_, subjects) in ep.SUBJECT_CLASSES.items()}
    for c, subjects in members.items():
        assert subjects, c
        for other, theirs in members.items():
            assert other == c or not subjects & theirs, (c, other)
    for noun in members["caption"]:  # a mesh noun of the generator, so in its captions
        assert noun in generator_nouns() and not vocabulary.unknown(noun), noun
    for noun in members["unseen"]:   # no word of it in any training caption
        assert vocabulary.unknown(noun) == words(noun), noun
    for compound in members["part"]:
        *owner, part = compound.split()
        assert owner and part in PART_WORDS and not set(owner) & PART_WORDS, compound
    assert members["none"] == {""}
    assert members["pronoun"] <= PRONOUNS
    # --subjects-per-class takes the first ones of each class, in order
    picked = ep.subjects_for(["caption", "part"], 2)
    assert [(s.cls, s.text) for s in picked] == [
        ("caption", ep.SUBJECT_CLASSES["caption"][1][0]), ("caption", ep.SUBJECT_CLASSES["caption"][1][1]),
        ("part", ep.SUBJECT_CLASSES["part"][1][0]), ("part", ep.SUBJECT_CLASSES["part"][1][1])]


def test_prompts_are_the_training_wording_with_the_subject_in_front():
    vocabulary = load_vocabulary(EMBEDDED_DIR)
    assert ep.prompt_for("jump", ep.Subject("part", "monkey head")) == "a monkey head jumps forward"
    assert ep.prompt_for("jump", ep.Subject("pronoun", "it")) == "it jumps forward"
    assert ep.prompt_for("jump", ep.Subject("none", "")) == "jumps forward"
    assert ep.prompt_for("sway", ep.Subject("unseen", "apple")) == "an apple sways from side to side"
    for family in ISSUE_FAMILIES:
        verb = ep.predicate(family)
        assert verb and ep._MARK not in verb and not vocabulary.unknown(verb), (family, verb)
        for cls, (_, subjects) in ep.SUBJECT_CLASSES.items():
            prompt = ep.prompt_for(family, ep.Subject(cls, subjects[0]))
            assert prompt.endswith(verb) and subjects[0] in prompt


def test_a_tiny_run_reports_every_class_with_sane_numbers(tmp_path, capsys):
    out = tmp_path / "takes.jsonl"
    code = main(["eval-prompts", "--meshes", "bird:400", "--families", "jump,grow",
                 "--classes", "caption,part", "--subjects-per-class", "1", "--num-traj", "64",
                 "--quality", "draft", "--judge-clips", "3", "--judge-steps", "40", "--keep-shape-study",
                 "--subject-reading", "literal", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * 2 and not (tmp_path / "takes.jsonl.part").exists()
    for r in records:
        assert r["peak_pct"] > 0 and r["peak_vertex_pct"] >= r["peak_pct"] and r["gt_peak_pct"] > 0
        assert r["edge_distortion_pct"] >= 0 and r["judged_as"] in ISSUE_FAMILIES
        assert r["correct"] == (r["judged_as"] == r["family"]) and r["vertices"] >= 100
        assert r["subject"] in r["prompt"]
        if r["class"] == "part":
            assert set(r["subject"].split()) & PART_WORDS
        assert r["read_as"] == r["prompt"]  # --subject-reading literal: the flow alone
        # the study's takes are made with Keep Shape off, then projected; projecting stretches less
        assert r["keep_shape"] == "off" and r["shape_change"] >= 0 and r["on_judged_as"] in ISSUE_FAMILIES
        assert r["on_edge_distortion_pct"] < r["edge_distortion_pct"] and r["on_peak_pct"] > 0
    report = ep.PromptReport("m", "draft", [1], ["caption", "part"], ["jump", "grow"], [], {},
                             records=records)
    t = ep.tables(report)
    assert set(t["by_class"]) == {"caption", "part"}
    for row in [*t["by_class"].values(), *t["by_family_class"].values(), t["overall"]]:
        assert row["takes"] >= 1 and row["median_peak_pct"] > 0 and row["peak_ratio"] > 0
        assert 0 <= row["top1_pct"] <= 100 and 0 <= row["moving_pct"] <= 100
    assert t["by_class"]["caption"]["takes"] == t["by_class"]["part"]["takes"] == 2
    assert "subject reading: literal" in printed
    for heading in ("By subject class", "caption noun", "noun + part word", "Per family", "Per mesh",
                    "judge on the families' ground truth"):
        assert heading in printed
    # the judge's record of the ground truth: one share per mesh, a percentage
    assert "| procedural bird" in printed
    study = ep.shape_study(records)
    assert set(study["by_family"]) == {"jump", "grow"} and study["by_family"]["jump"]["rigid"]
    always, never = study["thresholds"][float("inf")]["all"], study["thresholds"][0.05]
    assert always["projected_pct"] == 100
    assert always["edge_distortion_pct"] == pytest.approx(
        sum(r["on_edge_distortion_pct"] for r in records) / len(records))
    for r in records:
        assert ep.shaped_view(r, "off")["edge_distortion_pct"] == r["edge_distortion_pct"]
        assert ep.shaped_view(r, "auto", -1)["projected"] is False
    assert 0 <= never["all"]["projected_pct"] <= 100
    for heading in ("Keep Shape, each take off / on / auto", "Keep Shape auto by threshold"):
        assert heading in printed


@pytest.mark.parametrize("argv, says", [
    (["--meshes", "missing/nowhere.obj"], "mesh file not found"),
    (["--meshes", "teapot:3"], "unknown mesh"),
    (["--meshes", "suzanne:nine"], "not a whole number"),
    (["--meshes", "bunny:/no/such/bunny.tgz"], "bunny package not found"),
    (["--families", "walk"], "not a whole-body family"),
    (["--classes", "verbs"], "unknown subject class"),
    (["--subjects-per-class", "0"], "at least 1"),
    (["--seeds", "one"], "whole numbers"),
    (["--judge-clips", "1"], "--judge-clips"),
])
def test_bad_input_is_one_line_and_exit_2(argv, says, capsys):
    assert main(["eval-prompts", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "\n" not in err and "Traceback" not in err


def test_the_help_page_prints(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval-prompts", "--help"])
    assert exit_.value.code == 0 and "--subjects-per-class" in capsys.readouterr().out

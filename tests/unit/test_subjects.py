"""Training subjects (backend/data/subjects.py): other nouns for the captions, none of them one
that `eval-prompts` measures with, and swapped in with the article agreeing."""

import torch

from backend.data import subjects
from backend.data.motions import FAMILY_SPECS
from backend.eval_prompts import SUBJECT_CLASSES
from backend.train.flow import EncodedSet, resubject


def test_no_subject_eval_prompts_measures_with_is_trained_on():
    measured_unseen = set(SUBJECT_CLASSES["unseen"][1])
    measured_owners = {word for compound in SUBJECT_CLASSES["part"][1] for word in compound.split()[:-1]}
    trained = {word for noun in subjects.OBJECT_NOUNS + subjects.COMPOUND_NOUNS for word in noun.split()}
    assert not trained & measured_unseen and not trained & measured_owners
    # part words are shared on purpose: the lesson is that a part word in the subject is no verb
    assert {c.split()[-1] for c in SUBJECT_CLASSES["part"][1]} <= set(subjects.PART_WORDS)


def test_the_noun_is_swapped_once_with_its_article():
    swap = subjects.swap_subject
    assert swap("a dog jumps forward", "dog", "owl head") == "an owl head jumps forward"
    assert swap("the dog is spinning clockwise", "dog", "barrel") == "the barrel is spinning clockwise"
    assert swap("a ball bounces like a ball", "ball", "egg") == "an egg bounces like a ball"
    assert swap("dog wings flapping", "dog", "cat") == "cat wings flapping"
    assert swap("a stack of blocks sways", "stack of blocks", "rock") == "a rock sways"
    assert swap("a doghouse sways", "dog", "cat") == "a doghouse sways"   # whole words only
    assert swap("it sways", "dog", "cat") == "it sways"


def _has_part_word(subject: str) -> bool:
    return bool(set(subject.replace("'s", "").split()) & set(subjects.PART_WORDS))


def test_compounds_only_where_allowed():
    g = torch.Generator().manual_seed(0)
    plain = [subjects.draw_subject(False, g) for _ in range(300)]
    compound = [subjects.draw_subject(True, g) for _ in range(300)]
    assert not any(_has_part_word(s) for s in plain)
    assert 110 < sum(_has_part_word(s) for s in compound) < 190


def test_part_motions_get_compounds_only_when_asked():
    articulated = next(f for f, spec in FAMILY_SPECS.items() if spec.articulated)
    encoded = EncodedSet(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1),
                         [["a dog nods its head"]], [articulated], ["dog"])
    g = torch.Generator().manual_seed(2)

    def subjects_of(everywhere: bool) -> list[str]:
        swapped = [resubject("a dog nods its head", 0, encoded, 0.99, g, everywhere) for _ in range(200)]
        assert all(s.endswith(" nods its head") for s in swapped)
        return [s.split(" nods")[0].split(" ", 1)[1] for s in swapped]

    assert not any(_has_part_word(s) for s in subjects_of(False))
    assert 60 < sum(_has_part_word(s) for s in subjects_of(True)) < 140


def test_training_swaps_about_the_rate_asked_for():
    whole = next(f for f, spec in FAMILY_SPECS.items() if not spec.articulated)
    encoded = EncodedSet(torch.zeros(2, 1, 1), torch.zeros(2, 1, 1), torch.zeros(2, 1, 1),
                         [["a dog jumps"], ["jumps"]], [whole, whole], ["dog", None])
    g = torch.Generator().manual_seed(1)
    assert all(resubject("a dog jumps", 0, encoded, 0.0, g) == "a dog jumps" for _ in range(50))
    swapped = [resubject("a dog jumps", 0, encoded, 0.5, g) for _ in range(400)]
    assert 150 < sum(s != "a dog jumps" for s in swapped) < 250
    assert all(s.endswith(" jumps") for s in swapped)
    assert resubject("jumps", 1, encoded, 1.0, g) == "jumps"      # no noun known: unchanged


def test_possessive_compounds_only_at_the_share_asked_for():
    # "the lion's head jumps" reads like the captions' own part motions ("the dog's head bobs")
    g = torch.Generator().manual_seed(3)
    compounds = [s for s in (subjects.draw_subject(True, g) for _ in range(600)) if _has_part_word(s)]
    assert 0.1 < sum("'s " in s for s in compounds) / len(compounds) < 0.35
    plain = [subjects.draw_subject(True, g, possessive=0.0) for _ in range(300)]
    assert any(_has_part_word(s) for s in plain) and not any("'s " in s for s in plain)

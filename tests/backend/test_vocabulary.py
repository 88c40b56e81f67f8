"""A model folder lists the words its flow learned from; prompts with other words get a warning."""

import json

import pytest

from backend.errors import CheckpointError
from backend.vocabulary import FILE_NAME, Vocabulary, load_vocabulary, words


def test_words_are_lower_case_letter_runs():
    assert words("The Dog's tail-wag, 3 times!") == ["the", "dog", "s", "tail", "wag", "times"]


def test_known_prompts_pass_and_unknown_words_are_named_with_the_taught_motions():
    vocab = Vocabulary.from_captions(["a dog wags its tail quickly", "the blob melts"], ["wag_tail", "melt", None])
    assert vocab.motions == ("melt", "wag tail")
    assert vocab.check("A DOG wags its tail!") == []
    assert vocab.unknown("a blob liquefies and liquefies quickly") == ["liquefies", "and"]
    (warning,) = vocab.check("a blob liquefies")
    assert "'liquefies'" in warning and "melt, wag tail" in warning
    (warning,) = Vocabulary.from_captions(["a dog walks"]).check("a dog strolls")
    assert "'strolls'" in warning and FILE_NAME in warning  # no motion names: point at the file


def test_vocabulary_file_round_trips_merges_and_refuses_damage(tmp_path):
    first = Vocabulary.from_captions(["a dog walks"], ["walk"])
    later = Vocabulary.from_captions(["a dog jumps"], ["jump"])
    merged = later.merged(first)
    assert merged.known == {"a", "dog", "walks", "jumps"} and merged.motions == ("jump", "walk")
    assert load_vocabulary(tmp_path) is None  # a folder without the file: no check
    merged.save(tmp_path)
    assert load_vocabulary(tmp_path) == merged
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged.*Delete it"):
        load_vocabulary(tmp_path)
    (tmp_path / FILE_NAME).write_text(json.dumps({"format_version": 1, "words": "dog"}))
    with pytest.raises(CheckpointError, match="lists of strings"):
        load_vocabulary(tmp_path)


def test_vocabulary_command_writes_and_merges(tmp_path):
    import shutil

    from backend.__main__ import main
    from backend.data.procedural import write_dataset

    data = tmp_path / "data"
    write_dataset(data, 4, seed=5, max_vertices=150, shard_size=4)
    model = tmp_path / "model"
    model.mkdir()
    assert main(["vocabulary", "--model", str(model), "--data", str(data)]) == 2  # not a model folder
    shutil.copy(__import__("backend.model_manager", fromlist=["EMBEDDED_DIR"]).EMBEDDED_DIR / "config.json", model)
    Vocabulary(frozenset({"zebra"})).save(model)
    assert main(["vocabulary", "--model", str(model), "--data", str(data)]) == 0
    vocab = load_vocabulary(model)
    from backend.data.shards import iter_dataset
    captions = [c for s in iter_dataset(data) for c in s.captions]
    assert "zebra" in vocab.known and all(vocab.check(c) == [] for c in captions)
    assert main(["vocabulary", "--model", str(model), "--data", str(data), "--replace"]) == 0
    assert "zebra" not in load_vocabulary(model).known


def test_inflections_of_a_known_word_are_known():
    vocab = Vocabulary.from_captions(["a dog shakes", "the ball is rolling", "it flies"])
    assert vocab.unknown("make the dog shake, roll and fly") == ["make", "and"]
    assert vocab.unknown("the dog waves") == ["waves"]


def test_shipped_model_knows_its_training_wording_and_flags_held_out_verbs():
    import re

    import numpy as np

    from backend.data.captions import CAPTIONS, templates_of, train_templates
    from backend.model_folder import load_model
    from backend.model_manager import EMBEDDED_DIR
    from backend.pipeline import animate

    vocab = load_vocabulary(EMBEDDED_DIR)
    assert vocab is not None and len(vocab.motions) == len(CAPTIONS)
    for family in CAPTIONS:
        for i in train_templates(family):
            assert vocab.check(re.sub(r"\{\w+\}", " ", templates_of(family)[i])) == [], (family, i)
    assert vocab.check("a dragon flaps its wings") == []
    for verb in ("liquefies", "dwindles", "somersaults"):  # held-out verbs the model does not move for
        (warning,) = vocab.check(f"a blob {verb}")
        assert f"'{verb}'" in warning and "melt" in warning

    model = load_model(EMBEDDED_DIR)
    assert model.vocabulary == vocab
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], dtype=np.float32)
    faces = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    result = animate(square, faces, "a pyramid liquefies", model=model, seed=0, steps=2)
    assert any("'liquefies'" in w for w in result.warnings)

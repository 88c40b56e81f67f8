"""The probes that ask what MiniLM itself knows of a held-out wording: its token states of a verb,
and its sentence embedding read as a nearest-caption lookup or through a linear classifier."""


def test_text_encoder_probe_ranks_a_known_synonym_first_and_reports_every_verb(load_script):
    # research/probes/probe_text_encoder.py: the evidence (research/notes/) on which held-out verbs
    # MiniLM knows.
    from backend.models.text import MiniLMTextEncoder

    probe = load_script("probe_text_encoder", "research/probes")
    training = {"spin": "spins", "grow": "grows", "sink": "sinks"}
    ranks = probe.family_ranks(MiniLMTextEncoder(), {"rotates": "spin", "gets larger": "grow"}, training)
    assert ranks["rotates"][0] == 1 and ranks["gets larger"][0] == 1, ranks
    assert all(len(nearest) == 3 and set(nearest) == set(training) for _, nearest in ranks.values())


def test_caption_retrieval_probe_takes_the_family_of_the_nearest_training_caption(load_script):
    from backend.models.text import MiniLMTextEncoder

    probe = load_script("probe_caption_retrieval", "research/probes")
    train = {"a dog melts": "melt", "a dog spins around": "spin", "a bird flaps its wings": "flap_wings"}
    held_out = [("the cat is melting", "melt"), ("an owl beats its wings", "flap_wings"),
                ("a top spins around", "spin"), ("a dog melts", "spin")]  # the last is labelled wrong
    result = probe.retrieval_accuracy(MiniLMTextEncoder(), train, held_out)
    assert result["n"] == 4 and result["accuracy"] == 0.75
    assert result["per_family"]["spin"] == {"spin": 1, "melt": 1}
    assert result["per_family"]["melt"] == {"melt": 1}


def test_caption_classifier_probe_reads_the_verb_where_the_nearest_caption_follows_the_subject(load_script):
    """Each held-out caption's subject appears in training only with the other family's verb
    (and once with its own), so the nearest training caption is the wrong family; a classifier
    learns that the verb decides."""
    from backend.models.text import MiniLMTextEncoder

    probe = load_script("probe_caption_retrieval", "research/probes")
    melters = ["a large red dragon with wide wings", "a tiny grey mouse with a long tail",
               "a tall wooden robot with metal arms"]
    spinners = ["a fat orange cat", "a green frog", "a small blue fish"]
    train = {f"{s} melts": "melt" for s in melters} | {f"{s} spins": "spin" for s in spinners}
    train |= {f"{spinners[0]} slowly melts away": "melt", f"{melters[0]} spins quickly": "spin"}
    held_out = [(f"{s} spins", "spin") for s in melters[1:]] + [(f"{s} melts", "melt") for s in spinners[1:]]
    encoder = MiniLMTextEncoder()
    assert probe.retrieval_accuracy(encoder, train, held_out)["accuracy"] == 0.0
    classified = probe.classifier_accuracy(encoder, train, held_out, epochs=300)
    assert classified["n"] == 4 and classified["accuracy"] == 1.0, classified
    assert classified["per_family"]["spin"] == {"spin": 2}

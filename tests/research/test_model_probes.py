"""The probes that measure the shipped model itself: which phrasings move it, and which motion
families survive its VAE (research/probes/; the figures are in research/notes/)."""

import numpy as np

from backend.model_manager import EMBEDDED_DIR


def test_wording_probe_tells_a_known_phrasing_from_standing_still(tmp_path, load_script):
    # research/probes/probe_phrasings.py is how the training notes measure which phrasings move the model.
    from backend.data.procedural import write_dataset

    write_dataset(tmp_path, 2, seed=2, split="eval", families=["melt"], max_vertices=300)
    probe = load_script("probe_phrasings", "research/probes")
    ratios = probe.probe(str(EMBEDDED_DIR), tmp_path, "melt", ["melts", "stands still"], limit=2)
    assert set(ratios) == {"melts", "stands still"}
    assert all(np.isfinite(r) and r > 0 for r in ratios.values())
    assert ratios["melts"] > 2 * ratios["stands still"], ratios


def test_reconstruction_probe_labels_each_familys_reconstructions(tmp_path, load_script):
    # research/probes/probe_reconstruction.py: which families survive the VAE (the notes' shake finding).
    import pytest

    from backend.data.procedural import write_dataset

    write_dataset(tmp_path, 12, seed=2, split="eval", families=["roll", "spin", "shake"], max_vertices=300)
    probe = load_script("probe_reconstruction", "research/probes")
    rows = probe.probe([str(EMBEDDED_DIR)], tmp_path, limit=6, judge_steps=200)[str(EMBEDDED_DIR)]
    assert set(rows) == {"roll", "spin", "shake"} and sum(r["n"] for r in rows.values()) == 6
    for r in rows.values():
        assert 0.0 <= r["recognised"] <= 1.0 and 0.0 < r["error_pct"] < 10.0
        # large rigid motions, and (since round 2's VAE) the small fast shake, come through whole
        assert 0.8 < r["amplitude"] < 1.25, rows
    with pytest.raises(SystemExit, match="must cover every family"):
        probe.probe([str(EMBEDDED_DIR)], tmp_path, limit=12, judge_steps=10)


def test_part_subject_forms_probe_moves_the_read_form_more_than_the_possessive(load_script):
    # research/probes/probe_part_subject_forms.py: what the subject reading leaves to the flow.
    from backend.reference_meshes import load_meshes, parse_spec

    probe = load_script("probe_part_subject_forms", "research/probes")
    mesh = load_meshes([parse_spec("suzanne:1")])[0]
    rows = probe.probe(mesh, ["jump"], quality="draft", judge_clips=3, judge_steps=20,
                       forms={k: probe.FORMS[k] for k in ("name + part (read)", "possessive")})
    read, possessive = rows["name + part (read)"]["peaks"][0], rows["possessive"]["peaks"][0]
    # the possessive goes to the flow as typed: another take, and (as on Suzanne at level 2) less motion
    assert rows["name + part (read)"]["correct"] == [True] and read > 10 and possessive < read, rows

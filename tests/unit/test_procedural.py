"""The procedural training set (numpy only): determinism, family coverage and validity, held-out
splits, articulation, rigidity, and that speed / amplitude / direction words match the motion."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.data import DatasetError, iter_dataset
from backend.data import captions as cap
from backend.data import procedural as P
from backend.data.shards import read_shard
from backend.data.geometry import edge_lengths
from backend.data.motions import FAMILY_SPECS, MotionParams, animate

REPO = Path(__file__).resolve().parents[2]
F = len(P.FAMILIES)


def _digest(samples) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(s.frames.tobytes())
        h.update(s.faces.tobytes())
        h.update(json.dumps([s.captions, s.source, s.family, s.meta], sort_keys=True).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def mixed():
    """Two full blocks of families from one seed (every family twice)."""
    return P.generate(2 * F, seed=1)


@pytest.fixture(scope="module")
def per_family():
    """Three samples of every family, each from its own stream."""
    return {f: P.generate(3, seed=5, families=[f]) for f in P.FAMILIES}


# ---------------------------------------------------------------------------------------------
# Families and determinism
# ---------------------------------------------------------------------------------------------


def test_family_list():
    required = {"flap_wings", "wag_tail", "walk", "wave_arm", "nod_head", "shake_head", "swim",
                "slither", "jump", "bounce", "spin", "sway", "shake", "squash_stretch", "twist",
                "bend", "pulse", "wobble", "float_up", "sink", "grow", "shrink", "fall_over", "melt"}
    assert F >= 24 and len(set(P.FAMILIES)) == F and required <= set(P.FAMILIES)
    for fam in P.FAMILIES:
        assert P.compatible_kinds(fam), fam
        templates, _ = cap.CAPTIONS[fam]
        assert len(templates) >= 8 and len(set(templates)) == len(templates)
    assert set(cap.CAPTIONS) == set(P.FAMILIES)


def test_generate_is_deterministic_and_index_independent(mixed):
    again = P.generate(2 * F, seed=1)
    assert _digest(again) == _digest(mixed)
    for a, b in zip(mixed, again):
        assert a.frames.tobytes() == b.frames.tobytes() and a.faces.tobytes() == b.faces.tobytes()
    assert _digest(P.generate(2 * F, seed=2)) != _digest(mixed)
    # sample i does not depend on how many samples are made, so loaders can build by index
    for i in (0, 7, 2 * F - 1):
        assert _digest([P.sample_at(i, seed=1)]) == _digest([mixed[i]])
    assert _digest(P.generate(5, seed=1)) == _digest(mixed[:5])


def test_deterministic_across_processes(mixed):
    code = ("import hashlib, json; from backend.data import procedural as P\n"
            "h = hashlib.sha256()\n"
            f"for s in P.generate({F}, seed=1):\n"
            "    h.update(s.frames.tobytes()); h.update(s.faces.tobytes())\n"
            "    h.update(json.dumps([s.captions, s.source, s.family, s.meta], sort_keys=True).encode())\n"
            "print(h.hexdigest())\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest(mixed[:F])


def test_families_are_balanced_and_pair_with_capable_meshes(mixed):
    counts = {f: sum(s.family == f for s in mixed) for f in P.FAMILIES}
    assert set(counts.values()) == {2}
    for s in mixed:
        spec = FAMILY_SPECS[s.family]
        assert spec.applies_to(P.KIND_CAPABILITIES[s.meta["mesh_kind"]])


# ---------------------------------------------------------------------------------------------
# Validity of every family
# ---------------------------------------------------------------------------------------------


def test_every_family_gives_valid_samples(per_family):
    for fam, samples in per_family.items():
        for s in samples:
            assert s.family == fam and s.frames.shape[0] == 16 and s.frames.dtype == np.float32
            assert np.all(np.isfinite(s.frames))
            assert s.faces.min() >= 0 and s.faces.max() < s.num_vertices
            assert 100 <= s.num_vertices <= P.DEFAULT_MAX_VERTICES
            assert "vertex_budget_note" not in s.meta
            # frame 0 is the rest pose of the mesh the meta names, bit for bit
            mesh = P.build_mesh(s.meta["mesh_kind"], s.meta["mesh_id"])
            assert s.frames[0].tobytes() == mesh.vertices.astype(np.float32).tobytes(), fam
            size = np.ptp(s.frames[0], axis=0).max()
            moved = np.linalg.norm(s.frames - s.frames[0], axis=-1).max()
            assert moved > 0.01 * size, (fam, moved / size)
            # smooth: no frame jumps by more than 60% of the mesh size
            step = np.linalg.norm(np.diff(s.frames, axis=0), axis=-1).max()
            assert step < 0.6 * size, (fam, step / size)
            assert len(s.captions) == len(cap.train_templates(fam))
            assert all(s.meta["noun"] in c and "{" not in c and "  " not in c for c in s.captions)
            assert set(s.meta["params"]) >= {"speed", "amplitude", "direction"}


def test_meshes_are_clean_and_capabilities_match():
    for kind in P.KINDS:
        for mesh_id in (1, 2, 3):
            m = P.build_mesh(kind, mesh_id)
            v, f = m.vertices, m.faces
            area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
            assert area.min() > 0, (kind, mesh_id)
            assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f)
            assert abs(v[:, 2].min()) < 0.2 * np.ptp(v, axis=0).max()  # standing on the ground
            assert m.capabilities == P.KIND_CAPABILITIES[kind]
            if m.skeleton is not None:
                w = m.skin_weights
                assert np.allclose(w.sum(axis=1), 1.0) and w.min() >= 0
                ranges = m.part_ranges()
                assert sum(b - a for r in ranges.values() for a, b in r) == len(v)


def test_vertex_budget_is_respected_and_noted():
    samples = P.generate(F, seed=3, max_vertices=400)
    assert all(s.num_vertices <= 400 for s in samples)
    noted = [s for s in samples if "vertex_budget_note" in s.meta]
    assert noted and all("> budget 400" in s.meta["vertex_budget_note"] for s in noted)
    assert all("parts" not in s.meta for s in noted)


def test_bad_arguments():
    with pytest.raises(DatasetError, match="split"):
        P.generate(1, 0, split="test")
    with pytest.raises(DatasetError, match="unknown motion families"):
        P.generate(1, 0, families=["dance"])
    with pytest.raises(DatasetError, match="seed=-1 must be a non-negative integer"):
        P.generate(1, -1)
    with pytest.raises(DatasetError, match="unknown mesh kind"):
        P.build_mesh("dragonfly", 1)


# ---------------------------------------------------------------------------------------------
# Held-out splits
# ---------------------------------------------------------------------------------------------


def _template_regex(family: str, index: int, noun: str) -> re.Pattern:
    """A space-insensitive regex for one template with its noun and every phrase of its slots."""
    template, vocab = cap.templates_of(family)[index], cap.CAPTIONS[family][1]
    out = []
    for piece in re.split(r"(\{\w+\})", template):
        slot = re.fullmatch(r"\{(\w+)\}", piece)
        if not slot:
            out.append(re.escape(piece.replace(" ", "")))
            continue
        name = slot.group(1)
        if name in ("a_noun", "the_noun", "noun"):
            word = {"a_noun": cap.article(noun) + noun, "the_noun": "the" + noun, "noun": noun}[name]
            out.append(re.escape(word.replace(" ", "")))
            continue
        table = vocab.get(name, cap._DEFAULTS.get(name))
        phrases = {p.replace(" ", "") for choices in table.values() for p in choices}
        out.append("(?:" + "|".join(sorted(map(re.escape, phrases), key=len, reverse=True)) + ")")
    return re.compile("".join(out))


def _matching_templates(sample) -> set[int]:
    text = sample.captions
    found = set()
    for c in text:
        squashed = c.replace(" ", "")
        hits = {i for i in range(len(cap.templates_of(sample.family)))
                if _template_regex(sample.family, i, sample.meta["noun"]).fullmatch(squashed)}
        assert hits, (sample.family, c)
        found |= hits
    return found


def test_caption_paraphrases_split(per_family):
    evals = {f: P.generate(2, seed=5, split="eval", families=[f]) for f in P.FAMILIES}
    for fam in P.FAMILIES:
        for s in per_family[fam]:
            assert _matching_templates(s) <= set(cap.train_templates(fam)), fam
        for s in evals[fam]:
            assert len(s.captions) == len(cap.EVAL_TEMPLATES)
            assert _matching_templates(s) <= set(cap.EVAL_TEMPLATES), fam
        train_text = {c for s in per_family[fam] for c in s.captions}
        assert not train_text & {c for s in evals[fam] for c in s.captions}
        assert not set(cap.train_templates(fam)) & set(cap.EVAL_TEMPLATES)


def _words(template: str) -> set[str]:
    return set(re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", template.lower())))


def test_extra_training_templates_keep_held_out_words_new():
    # A word that only the evaluation templates use must stay unseen in training: otherwise the
    # extra paraphrases would teach exactly what the held-out captions are meant to test.
    originals = set().union(*(_words(t) for ts, _ in cap.CAPTIONS.values() for t in ts[:6]))
    held_out_only = set().union(*(_words(ts[i]) for ts, _ in cap.CAPTIONS.values()
                                  for i in cap.EVAL_TEMPLATES)) - originals
    assert {"dwindles", "liquefies", "somersaults"} <= held_out_only
    for fam in cap.CAPTIONS:
        extra = cap.templates_of(fam)[len(cap.CAPTIONS[fam][0]):]  # every added training template
        assert extra, fam
        for t in extra:
            assert not _words(t) & held_out_only, (fam, t)
            for i in cap.EVAL_TEMPLATES:  # nor a near copy of a held-out sentence
                held = _words(cap.CAPTIONS[fam][0][i])
                assert len(_words(t) & held) < 0.5 * len(_words(t) | held), (fam, t)
            assert t not in cap.CAPTIONS[fam][0], (fam, t)


def test_mesh_split_is_disjoint(mixed):
    evals = P.generate(F, seed=1, split="eval")
    train_ids = {s.meta["mesh_id"] for s in mixed}
    eval_ids = {s.meta["mesh_id"] for s in evals}
    assert all(not P.is_eval_mesh(i) for i in train_ids)
    assert all(P.is_eval_mesh(i) for i in eval_ids)
    assert not train_ids & eval_ids
    rng = np.random.default_rng(0)
    assert not any(P.is_eval_mesh(P.draw_mesh_id(rng, "train")) for _ in range(2000))
    assert all(s.meta["split"] == "eval" and "split=eval" in s.source for s in evals)


# ---------------------------------------------------------------------------------------------
# Articulation and rigidity
# ---------------------------------------------------------------------------------------------


def _params(family: str, speed=None, amplitude=None, direction=None) -> MotionParams:
    spec = FAMILY_SPECS[family]
    speed = speed or ("normal" if "normal" in spec.speeds else list(spec.speeds)[0])
    amplitude = amplitude or ("normal" if "normal" in spec.amplitudes else list(spec.amplitudes)[0])
    direction = direction or spec.directions[0]
    return MotionParams(speed, amplitude, direction, float(spec.speeds[speed]),
                        float(spec.amplitudes[amplitude]))


def _meshes(family: str, count: int = 2):
    """`count` meshes of every capable kind that suit the family."""
    spec = FAMILY_SPECS[family]
    for kind in P.compatible_kinds(family):
        found = 0
        for mesh_id in range(1, 60):
            mesh = P.build_mesh(kind, mesh_id)
            if spec.suits(mesh):
                yield mesh
                found += 1
                if found == count:
                    break


@pytest.mark.parametrize("family, direction, parts", [
    ("flap_wings", None, ("wing_l", "wing_r")),
    ("wag_tail", None, ("tail",)),
    ("nod_head", None, ("head",)),
    ("shake_head", None, ("head",)),
    ("wave_arm", "left", ("arm_l",)),
    ("wave_arm", "right", ("arm_r",)),
    ("raise_arms", None, ("arm_l", "arm_r")),
])
def test_articulated_families_move_only_their_parts(family, direction, parts):
    for mesh in _meshes(family):
        disp = np.linalg.norm(animate(mesh, FAMILY_SPECS[family], _params(family, direction=direction))
                              - mesh.vertices, axis=-1)
        inside = mesh.part_indices(*parts)
        outside = np.setdiff1d(np.arange(len(mesh.vertices)), inside)
        assert len(inside) and disp[:, inside].max() > 0.05 * np.ptp(mesh.vertices[inside], axis=0).max()
        assert disp[:, outside].max() == 0.0, (family, mesh.kind)


def test_walk_moves_legs_relative_to_a_rigidly_carried_body():
    for mesh in _meshes("walk"):
        frames = animate(mesh, FAMILY_SPECS["walk"], _params("walk", direction="in place"))
        disp = frames - mesh.vertices
        body = mesh.part_indices("body")
        carried = disp[:, body]
        assert np.allclose(carried, carried[:, :1], atol=1e-12)  # the body only bobs as a whole
        relative = np.linalg.norm(disp - carried[:, :1], axis=-1)
        limbs = mesh.part_indices("leg_fl", "leg_fr", "leg_bl", "leg_br", "leg_l", "leg_r",
                                  "arm_l", "arm_r")
        assert relative[:, limbs].sum() / relative.sum() > 0.99, mesh.kind
        ahead = animate(mesh, FAMILY_SPECS["walk"], _params("walk", direction="forward"))
        assert (ahead[-1] - ahead[0])[:, 1].mean() < -0.05  # forward is -Y


def test_rear_up_keeps_hind_feet_planted_and_lifts_the_front():
    for mesh in _meshes("rear_up"):
        frames = animate(mesh, FAMILY_SPECS["rear_up"], _params("rear_up", speed="slow"))
        hind = mesh.part_indices("leg_bl", "leg_br")
        assert np.abs(frames[:, hind] - frames[:1, hind]).max() < 1e-9
        head = mesh.part_indices("head")
        assert (frames[-1, head, 2] - frames[0, head, 2]).mean() > 0.1


def test_swim_undulation_grows_toward_the_tail():
    for mesh in _meshes("swim"):
        frames = animate(mesh, FAMILY_SPECS["swim"], _params("swim", direction="in place"))
        lateral = np.abs(frames[..., 0] - mesh.vertices[:, 0]).max(axis=0)
        assert lateral[mesh.part_indices("tail")].mean() > 2 * lateral[mesh.part_indices("head")].mean()


def test_slither_bends_the_body_and_travels_forward():
    for mesh in _meshes("slither"):
        spec, length = FAMILY_SPECS["slither"], mesh.info["length"]
        still = animate(mesh, spec, _params("slither", direction="in place"))
        width = np.ptp(still[..., 0], axis=1)  # sideways extent of the body per frame
        assert width[8:].min() > 2 * width[0] and width.max() > 0.1 * length
        assert abs((still[-1] - still[0])[:, 1].mean()) < 0.05 * length
        ahead = animate(mesh, spec, _params("slither", direction="forward"))
        assert (ahead[-1] - ahead[0])[:, 1].mean() < -0.3 * length  # forward is -Y


def test_edge_lengths():
    """Rigid families and rigid-limb articulations keep every edge; blended tubes (tails,
    spines) stay within a couple of percent on average."""
    limbs = {"flap_wings", "nod_head", "shake_head", "wave_arm", "raise_arms", "walk", "rear_up"}
    tubes = {"wag_tail", "swim", "slither"}
    for family in P.FAMILIES:
        spec = FAMILY_SPECS[family]
        if not (spec.rigid or family in limbs | tubes):
            continue
        for mesh in _meshes(family, count=1):
            for amplitude in spec.amplitudes:
                frames = animate(mesh, spec, _params(family, speed="fast" if "fast" in spec.speeds
                                                      else None, amplitude=amplitude))
                lengths = edge_lengths(frames, mesh.faces)
                distortion = np.abs(lengths / lengths[0] - 1.0)
                if family in tubes:
                    assert distortion.mean() < 0.02, (family, mesh.kind, distortion.mean())
                else:
                    assert distortion.max() < 1e-9, (family, mesh.kind, distortion.max())
    # and in the float32 samples that reach training
    for s in P.generate(F, seed=4):
        if FAMILY_SPECS[s.family].rigid:
            lengths = edge_lengths(s.frames.astype(np.float64), s.faces)
            assert np.abs(lengths / lengths[0] - 1.0).max() < 5e-3, s.family


# ---------------------------------------------------------------------------------------------
# The words in the captions match the motion
# ---------------------------------------------------------------------------------------------

_DURATION = {"float_up", "sink", "grow", "shrink", "fall_over", "melt"}


def _tall_mesh(family):
    for kind in ("humanoid",) + tuple(P.compatible_kinds(family)):
        if kind in P.compatible_kinds(family):
            for mesh_id in range(1, 40):
                mesh = P.build_mesh(kind, mesh_id)
                if FAMILY_SPECS[family].suits(mesh):
                    return mesh
    raise AssertionError(family)


def _measures(mesh, frames):
    """Mean displacement, mean deformation about the moving centroid, and path length."""
    disp = frames - mesh.vertices
    return np.array([
        np.linalg.norm(disp, axis=-1).mean(),
        np.linalg.norm(disp - disp.mean(axis=1, keepdims=True), axis=-1).mean(),
        np.linalg.norm(np.diff(frames, axis=0), axis=-1).mean(axis=1).sum(),
    ])


def _reversals(mesh, frames) -> int:
    """How often the most-moving vertex reverses direction along any axis (oscillation count)."""
    disp = frames - mesh.vertices
    v = np.diff(disp[:, np.argmax(np.linalg.norm(disp, axis=-1).max(axis=0))], axis=0)
    v[np.abs(v) < 1e-3 * np.abs(v).max()] = 0.0
    return max(int(np.sum(np.diff(np.sign(c[c != 0])) != 0)) for c in v.T)


@pytest.mark.parametrize("family", P.FAMILIES)
def test_speed_and_amplitude_change_the_motion(family):
    spec = FAMILY_SPECS[family]
    mesh = _tall_mesh(family)
    amps = list(spec.amplitudes)
    if len(amps) > 1:
        low = _measures(mesh, animate(mesh, spec, _params(family, amplitude=amps[0])))
        high = _measures(mesh, animate(mesh, spec, _params(family, amplitude=amps[-1])))
        # a larger amplitude shows as larger displacement, deformation or path (wave_arm: the
        # wave, not the raise; swim: the undulation, not the travel)
        assert np.max(high / np.maximum(low, 1e-12)) > 1.25, (family, high / low)
    speeds = list(spec.speeds)
    slow = animate(mesh, spec, _params(family, speed=speeds[0]))
    fast = animate(mesh, spec, _params(family, speed=speeds[-1]))
    if family in _DURATION:  # same change, reached sooner
        def progress(frames):
            per_frame = np.linalg.norm(frames - mesh.vertices, axis=-1).mean(axis=1)
            return per_frame[7] / per_frame[-1]
        assert progress(fast) > progress(slow) + 0.15, family
    else:  # more cycles (more reversals) or a larger total turn (a longer path)
        ratio = _measures(mesh, fast)[2] / _measures(mesh, slow)[2]
        assert ratio > 1.25 or _reversals(mesh, fast) > _reversals(mesh, slow), family
    directions = spec.directions
    if len(directions) > 1:
        a = animate(mesh, spec, _params(family, direction=directions[0]))
        b = animate(mesh, spec, _params(family, direction=directions[1]))
        assert np.abs(a - b).max() > 0.01 * np.ptp(mesh.vertices, axis=0).max(), family


def test_direction_words_mean_what_they_say():
    mesh = _tall_mesh("jump")
    top = np.argmax(mesh.vertices[:, 2])
    right_of_centre = np.argmax(mesh.vertices[:, 0])

    def final_shift(family, direction, vertex=None):
        frames = animate(mesh, FAMILY_SPECS[family], _params(family, direction=direction))
        d = frames[-1] - frames[0]
        return d.mean(axis=0) if vertex is None else d[vertex]

    assert final_shift("jump", "forward")[1] < 0 and final_shift("jump", "left")[0] > 0
    assert final_shift("jump", "right")[0] < 0 and final_shift("jump", "backward")[1] > 0
    assert final_shift("fall_over", "left", top)[0] > 0 and final_shift("fall_over", "forward", top)[1] < 0
    assert final_shift("roll", "forward")[1] < 0
    early = animate(mesh, FAMILY_SPECS["spin"], _params("spin", direction="clockwise"))[2]
    assert (early - mesh.vertices)[right_of_centre, 1] < 0  # seen from above: +X turns toward -Y
    bend = animate(mesh, FAMILY_SPECS["bend"], _params("bend", speed="slow", direction="right"))
    assert bend[-1, top, 0] < mesh.vertices[top, 0]
    assert final_shift("float_up", None)[2] > 0 and final_shift("sink", None)[2] < 0


# ---------------------------------------------------------------------------------------------
# Writing a data set
# ---------------------------------------------------------------------------------------------


def test_write_dataset_round_trip(tmp_path):
    calls = []
    manifest = P.write_dataset(tmp_path / "ds", count=60, seed=2, shard_size=25,
                               progress=lambda done, total: calls.append((done, total)))
    assert manifest["shards"] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    assert calls == [(25, 60), (50, 60), (60, 60)]
    on_disk = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["seed"] == 2 and on_disk["split"] == "train" and on_disk["count"] == 60
    assert on_disk["generator_version"] == P.GENERATOR_VERSION and on_disk["families"] == P.FAMILIES
    assert sum(on_disk["family_counts"].values()) == 60
    assert max(on_disk["family_counts"].values()) - min(on_disk["family_counts"].values()) <= 1
    assert on_disk["held_out"]["caption_templates_eval"] == list(cap.EVAL_TEMPLATES)
    back = list(iter_dataset(tmp_path / "ds"))
    assert _digest(back) == _digest(P.generate(60, seed=2))
    with pytest.raises(DatasetError, match="already holds a dataset"):
        P.write_dataset(tmp_path / "ds", count=5, seed=2)
    small = P.write_dataset(tmp_path / "ds", count=5, seed=3, split="eval", overwrite=True)
    assert small["shards"] == ["shard-00000.npz"] and len(list(iter_dataset(tmp_path / "ds"))) == 5


def test_write_dataset_in_parallel_writes_the_same_set(tmp_path):
    serial = P.write_dataset(tmp_path / "one", count=23, seed=4, shard_size=5, max_vertices=300)
    calls = []
    parallel = P.write_dataset(tmp_path / "three", count=23, seed=4, shard_size=5, max_vertices=300,
                               workers=3, progress=lambda done, total: calls.append(done))
    assert parallel == serial
    assert calls == [5, 10, 15, 20, 23]  # shard order, whatever order the workers finish in
    for name in serial["shards"]:
        assert _digest(read_shard(tmp_path / "three" / name)) == _digest(read_shard(tmp_path / "one" / name))
    with pytest.raises(DatasetError, match="workers"):
        P.write_dataset(tmp_path / "bad", count=3, seed=4, workers=0)

"""The seam package: what crosses between Blender and the backend, tested without either."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aam_seam import arrays, codes, limits, protocol, shards, stages
from aam_seam.codes import ErrorCode, SeamError


def test_codes_from_the_wire_find_their_members_in_the_code_sets():
    assert "backend_died" in codes.RETRYABLE and ErrorCode.BACKEND_DIED in codes.RETRYABLE
    assert "protocol_version" in codes.FATAL and "bad_prompt" in codes.USER_FIXABLE
    assert "internal" not in codes.USER_FIXABLE and not codes.FATAL & codes.RETRYABLE
    assert json.loads(protocol.Error(code=ErrorCode.BAD_MESH).to_line())["code"] == "bad_mesh"


def test_messages_round_trip_and_a_warning_keeps_its_wire_name():
    request = protocol.AnimateRequest(id="j", prompt="a bird flaps", steps=8, solver="euler")
    assert protocol.parse_line(request.to_line()) == request
    notice = protocol.parse_line(protocol.Notice(id="j", message="careful").to_line())
    assert isinstance(notice, protocol.Notice) and notice.type == "warning"
    ready = protocol.Ready(solvers=[{"name": "euler", "evaluations_per_step": 1}])
    assert protocol.parse_line(ready.to_line()).solvers == ready.solvers
    line = json.dumps({"type": "cancel", "v": protocol.PROTOCOL_VERSION, "id": "x", "extra": 1})
    assert protocol.parse_line(line) == protocol.Cancel(id="x")  # unknown fields are dropped
    with pytest.raises(protocol.ProtocolVersionError, match="reinstall"):
        protocol.parse_line(json.dumps({"type": "cancel", "v": protocol.PROTOCOL_VERSION + 1}))
    for bad in ("not json", "[1, 2]", json.dumps({"type": "ping", "v": protocol.PROTOCOL_VERSION})):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_line(bad)


def test_progress_fraction_only_moves_forward():
    order = [("queued", 0, 0), ("load", 0, 1), ("load", 1, 1), ("prepare", 1, 1), ("encode", 1, 1),
             ("text", 1, 1)] + [("sample", i, 8) for i in range(1, 9)] + [("decode", 1, 1),
                                                                           ("write", 0, 1), ("write", 1, 1)]
    values = [stages.progress_fraction(*p) for p in order]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0
    assert stages.progress_text("sample", 3, 8) == "sampling the motion 3/8"
    assert stages.progress_fraction("from a newer backend", 1, 2) == 0.0


def test_read_mesh_file_builds_padded_polygons(tmp_path):
    np.testing.assert_array_equal(
        arrays.padded_polygons(np.array([0, 1, 2, 3, 2, 1, 4, 5, 6]), np.array([4, 5])),
        [[0, 1, 2, 3, -1], [2, 1, 4, 5, 6]])
    for flat, sizes, word in [([0, 1, 2], [4], "add up"), ([0, 1], [2], "at least 3"),
                              ([0, -1, 2], [3], "negative")]:
        with pytest.raises(SeamError, match=word) as err:
            arrays.padded_polygons(np.array(flat), np.array(sizes))
        assert err.value.code == "bad_mesh"
    vertices = np.random.default_rng(0).normal(size=(7, 3))
    path = tmp_path / "m.npz"
    np.savez(path, vertices=vertices)
    got, faces, mask = arrays.read_mesh_file(path)
    assert mask is None
    assert faces is None and got.shape == vertices.shape
    np.savez(path, verts=vertices)
    with pytest.raises(SeamError, match="no 'vertices'"):
        arrays.read_mesh_file(path)
    with pytest.raises(SeamError, match="does not exist") as err:
        arrays.read_mesh_file(tmp_path / "gone.npz")
    assert err.value.code == "bad_request"


def test_mesh_file_carries_quads_mixed_polygons_and_point_clouds(tmp_path):
    vertices = np.arange(18, dtype=np.float32).reshape(6, 3)
    for faces, expect in [
        (np.array([[0, 1, 2, 3]]), [[0, 1, 2, 3]]),
        ([[0, 1, 2], [2, 3, 4, 5]], [[0, 1, 2, -1], [2, 3, 4, 5]]),
        (arrays.Polygons(np.array([0, 1, 2, 2, 3, 4, 5]), np.array([3, 4])), [[0, 1, 2, -1], [2, 3, 4, 5]]),
        (None, None),
    ]:
        path = tmp_path / "mesh.npz"
        assert arrays.write_mesh_file(path, vertices, faces) == 6
        got_vertices, got_faces, _ = arrays.read_mesh_file(path)
        np.testing.assert_array_equal(got_vertices, vertices)
        assert (got_faces is None) if expect is None else np.array_equal(got_faces, expect)
    with pytest.raises(SeamError, match=r"\(N, 3\)"):
        arrays.write_mesh_file(tmp_path / "bad.npz", np.zeros((4, 2)), None)


def test_a_failed_result_write_keeps_the_earlier_good_file(tmp_path, monkeypatch):
    out = tmp_path / "out.npz"
    frames = np.ones((4, 5, 3), np.float32)
    arrays.write_result_file(out, frames, [7])

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError):
        arrays.write_result_file(out, frames * 2, [8])
    monkeypatch.undo()
    got, seeds = arrays.read_result_file(out, 5)
    assert seeds == [7] and np.array_equal(got, frames[None])
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no partial file left behind
    with pytest.raises(SeamError, match="shape") as err:
        arrays.read_result_file(out, 6)
    assert err.value.code == "bad_result"


def test_shards_round_trip_and_refuse_a_corrupt_file(tmp_path):
    rng = np.random.default_rng(1)
    records = [{"frames": rng.normal(size=(3, 4, 3)).astype(np.float32),
                "faces": np.array([[0, 1, 2], [1, 2, 3]]), "captions": ["a cube spins", "it turns"],
                "source": "cube", "family": "spin", "meta": {"n": np.int64(4)}},
               {"frames": rng.normal(size=(2, 5, 3)).astype(np.float32), "faces": np.zeros((0, 3)),
                "captions": [], "source": "cloud", "family": None, "meta": {}}]
    path = shards.write_shard(tmp_path / "s.npz", records)
    back = shards.read_shard(path)
    assert [r["source"] for r in back] == ["cube", "cloud"] and back[1]["family"] is None
    assert back[0]["captions"] == ["a cube spins", "it turns"] and back[0]["meta"] == {"n": 4}
    np.testing.assert_array_equal(back[1]["frames"], records[1]["frames"])
    np.testing.assert_array_equal(back[0]["faces"], records[0]["faces"])
    with np.load(path) as z:
        data = dict(z)
    data["frame_counts"] = data["frame_counts"] + 1
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(SeamError, match="corrupt") as err:
        shards.read_shard(tmp_path / "bad.npz")
    assert err.value.code == "bad_dataset"


def test_a_field_of_the_wrong_type_is_refused_and_names_its_job():
    good = protocol.AnimateRequest(id="j", prompt="p", steps=8, guidance=2, seed=None)
    assert protocol.parse_line(good.to_line()) == good  # an int is a fine float
    for fields, word in [({"id": {}}, "'id'"), ({"id": "j", "steps": "8"}, "'steps'"),
                         ({"id": "j", "steps": True}, "'steps'"), ({"id": "j", "guidance": "2"}, "'guidance'"),
                         ({"id": "j", "prompt": None}, "'prompt'")]:
        line = json.dumps({"type": "animate", "v": protocol.PROTOCOL_VERSION, **fields})
        with pytest.raises(protocol.ProtocolError, match=word) as err:
            protocol.parse_line(line)
        assert err.value.id == (fields["id"] if isinstance(fields["id"], str) else "")


def test_request_limits_hold_at_their_edges():
    ok = dict(seed=limits.MAX_SEED, steps=limits.MAX_STEPS, num_traj=limits.MAX_TOKENS, guidance=0,
              prompt="x" * limits.MAX_PROMPT_CHARS, frames=limits.MAX_FRAMES, strength=limits.MAX_STRENGTH)
    limits.check_request_values(**ok)
    limits.check_request_values()  # every default
    for name, value in [("seed", limits.MAX_SEED + 1), ("seed", -1), ("steps", 1), ("steps", 2.5),
                        ("num_traj", 0), ("num_traj", limits.MAX_TOKENS + 1), ("guidance", float("inf")),
                        ("guidance", True), ("prompt", "x" * (limits.MAX_PROMPT_CHARS + 1)),
                        ("prompt", "bad \udcff byte"), ("frames", 1), ("frames", limits.MAX_FRAMES + 1),
                        ("strength", -0.1), ("strength", 2.5), ("strength", float("nan"))]:
        with pytest.raises(SeamError) as err:
            limits.check_request_values(**{**ok, name: value})
        assert err.value.code in ("bad_input", "bad_prompt"), (name, value)


def test_npz_headers_are_read_without_loading_and_a_lying_one_is_caught(tmp_path):
    import io
    import zipfile

    np.savez(tmp_path / "ok.npz", a=np.zeros((10, 3), np.float32), b=np.zeros(4, np.int64))
    assert arrays.declared_sizes(tmp_path / "ok.npz") == {"a": 120, "b": 32}
    np.savez_compressed(tmp_path / "packed.npz", a=np.zeros((1000, 3)))
    assert arrays.declared_sizes(tmp_path / "packed.npz") == {"a": 24000}
    with pytest.raises(SeamError, match="limit"):
        arrays.check_npz_size(tmp_path / "packed.npz", 1000, ErrorCode.BAD_MESH, "mesh")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**9, 3)})
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as archive:
        archive.writestr("vertices.npy", header.getvalue() + bytes(96))
    with pytest.raises(SeamError, match="declares 24000000000 bytes") as err:
        arrays.read_mesh_file(tmp_path / "lie.npz")
    assert err.value.code == "bad_mesh"

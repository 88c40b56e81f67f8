"""Hostile files end in one clear refusal, never a crash, a memory bomb or a misleading message
(issue 18: the DyMesh reader's declared sizes and object arrays, coordinates beyond float32).

The memory bombs run in a child process under RLIMIT_AS 1.5 GB: a reader that allocates what the
file declares dies there with MemoryError or a signal instead of taking the test machine with it,
and the child reports its own peak RSS.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.data import DatasetError, read_dymesh_bin
from backend.data import readers
from backend.errors import MeshError
from backend.mesh import prepare_mesh, validate_mesh

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 1536 * 1024**2
_multiarray = readers._numpy_module("numpy._core.multiarray", "numpy.core.multiarray")

# The child sets its limit before importing numpy, so everything it does counts against it.
CHILD = f"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_BYTES}, {LIMIT_BYTES}))
from backend.data import DatasetError, read_dymesh_bin
from backend.data.readers import safe_load_pickle
try:
    sample = read_dymesh_bin(sys.argv[1])
    out = {{"dtype": str(sample.frames.dtype), "shape": list(sample.frames.shape),
           "values": sample.frames.reshape(-1)[:3].tolist()}}
    if sys.argv[2:] == ["--pickled-dtype"]:  # what the unpickler built, before read_dymesh_bin casts
        with open(sys.argv[1], "rb") as f:
            out["pickled_dtype"] = str(safe_load_pickle(f.read())["vertices"].dtype)
except DatasetError as exc:
    out = {{"error": str(exc)}}
# This process's own peak (VmHWM): ru_maxrss would carry over the parent's peak across exec.
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
out["maxrss_mib"] = int(peak[0].split()[1]) / 1024 if peak else 0.0
print(json.dumps(out))
"""


def read_in_child(path: Path, *flags: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


class Reduce:
    """Pickles as `func(*args)`, then BUILD with `state` when given: what a hand-made file says."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def declared_array(shape, dtype, raw) -> Reduce:
    """An array as numpy pickles it, with whatever shape, dtype and bytes the file claims."""
    return Reduce(_multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                  (1, shape, np.dtype(dtype), False, raw))


def write_clip(path: Path, vertices, faces=(), protocol=4) -> Path:
    path.write_bytes(pickle.dumps({"vertices": vertices, "faces": list(faces)}, protocol=protocol))
    return path


# ---------------------------------------------------------------------------------------------
# DyMesh .bin: declared sizes and object arrays
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, vertices, words", [
    # numpy fills an object array from a list: a short one crashed the process
    ("object_200M", declared_array((200_000_000,), "O", []), "object array"),
    ("float64_200M", declared_array((200_000_000,), "f8", b""), "more than the 512 MiB"),
    ("int8_2to80", declared_array((2**40, 2**40), "i1", b""), "more than the 512 MiB"),
    # numpy.ndarray itself is a global a pickle names: calling it allocates any shape
    ("ndarray_call", Reduce(np.ndarray, ((200_000_000,), np.dtype("O"))), "calls numpy.ndarray"),
    # a scalar of a huge dtype without its bytes: numpy allocates and zeroes the whole dtype
    ("scalar", Reduce(_multiarray.scalar, (np.dtype("S1000000000"),)), "more than the 512 MiB"),
    # the memo repeats one 4 MB array 1000 times in a list: np.asarray would make 4 GB
    ("memo_list", [np.zeros((1000, 1000), np.float32)] * 1000, "'vertices' would take"),
])
def test_declared_sizes_are_refused_before_allocating(tmp_path, name, vertices, words):
    path = write_clip(tmp_path / f"{name}.bin", vertices)
    assert path.stat().st_size < 5_000_000
    got = read_in_child(path)
    assert "error" in got and words in got["error"], got
    # refused by the reader's checks, not by the child's memory limit turned into a message
    assert got["error"].startswith(f"{path}: refused to load: ") and "MemoryError" not in got["error"]
    assert "Fix:" in got["error"] and got["maxrss_mib"] < 400, got


def test_a_tiny_file_declaring_200m_elements(tmp_path):
    path = write_clip(tmp_path / "bomb.bin", declared_array((200_000_000,), "f8", b""))
    assert path.stat().st_size < 200
    with pytest.raises(DatasetError, match=r"200000000 float64 array \(1,526 MiB\)"):
        read_dymesh_bin(path)


def test_object_arrays_are_refused_even_when_small_and_harmless(tmp_path):
    path = write_clip(tmp_path / "objects.bin", np.array([[0.0, 1.0, 2.0], [3, 4, 5]], dtype=object))
    with pytest.raises(DatasetError, match="object array") as info:
        read_dymesh_bin(path)
    assert str(info.value).startswith(f"{path}: refused to load") and "Fix:" in str(info.value)


@pytest.mark.parametrize("dtype", [[("a", "<f4"), ("b", "<i4")], "M8[ns]", "V8"])
def test_structured_void_and_datetime_arrays_are_refused(tmp_path, dtype):
    path = write_clip(tmp_path / "odd.bin", np.zeros(3, dtype=dtype))
    with pytest.raises(DatasetError, match="refused to load"):
        read_dymesh_bin(path)


def test_an_array_must_hold_the_bytes_it_declares(tmp_path):
    path = write_clip(tmp_path / "short.bin", declared_array((10, 3), "f4", b"\0" * 40))
    with pytest.raises(DatasetError, match=r"10 x 3 float32 array \(120 bytes\) but holds 40"):
        read_dymesh_bin(path)


def test_the_arrays_of_one_file_share_one_budget(tmp_path, monkeypatch):
    """The memo lets one stored byte string back many arrays; a byte-swapped dtype makes numpy
    copy it for each. Small limits stand in for 512 MiB / 1 GiB."""
    monkeypatch.setattr(readers, "MAX_ARRAY_BYTES", 600)
    monkeypatch.setattr(readers, "MAX_CLIP_BYTES", 1000)
    raw = bytes(400)
    path = tmp_path / "shared.bin"
    path.write_bytes(pickle.dumps({"vertices": [declared_array((50,), ">f8", raw) for _ in range(3)],
                                   "faces": []}))
    assert path.read_bytes().count(raw) == 1 and path.stat().st_size < 1000  # stored once
    with pytest.raises(DatasetError, match="add up to more than"):
        read_dymesh_bin(path)


def test_a_file_larger_than_any_clip_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_CLIP_BYTES", 1000)
    path = write_clip(tmp_path / "big.bin", np.zeros((100, 3), np.float32))
    with monkeypatch.context() as patch:
        patch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
        with pytest.raises(DatasetError, match="a DyMesh clip may be. Fix: split"):
            read_dymesh_bin(path)


def _dtype_rebuilt_after_use() -> bytes:
    """dtype f8 -> an array of [1.0, 2.0, 3.0] takes it -> the same dtype BUILT again with an
    object field. With a real numpy dtype the array's bytes would turn into object pointers."""
    P = pickle

    def text(s: str) -> bytes:
        return P.BINUNICODE + len(s).to_bytes(4, "little") + s.encode()

    def raw(b: bytes) -> bytes:
        return P.SHORT_BINBYTES + bytes([len(b)]) + b

    def dtype(spelling: str) -> bytes:
        return P.GLOBAL + b"numpy\ndtype\n" + text(spelling) + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE

    minus_one = P.BININT + (-1).to_bytes(4, "little", signed=True)
    plain_state = P.MARK + P.BININT1 + b"\x03" + text("|") + P.NONE * 3 + minus_one * 2 + P.BININT1 + b"\x3f" + P.TUPLE
    object_dtype = dtype("O8") + plain_state + P.BUILD
    fields = P.EMPTY_DICT + text("a") + object_dtype + P.BININT1 + b"\x00" + P.TUPLE2 + P.SETITEM
    return (P.PROTO + b"\x02"
            + dtype("f8") + P.BINPUT + b"\x01" + P.POP
            + P.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + P.GLOBAL + b"numpy\nndarray\n"
            + P.BININT1 + b"\x00" + P.TUPLE1 + raw(b"b") + P.TUPLE3 + P.REDUCE
            + P.MARK + P.BININT1 + b"\x01" + P.BININT1 + b"\x01" + P.BININT1 + b"\x03" + P.TUPLE2
            + P.BINGET + b"\x01" + P.NEWFALSE + raw(np.array([1.0, 2.0, 3.0]).tobytes())
            + P.TUPLE + P.BUILD
            + P.BINPUT + b"\x02" + P.POP
            + P.BINGET + b"\x01" + P.MARK + P.BININT1 + b"\x03" + text("|") + P.NONE
            + text("a") + P.TUPLE1 + fields + P.BININT1 + b"\x08" + P.BININT1 + b"\x01"
            + P.BININT1 + b"\x3f" + P.TUPLE + P.BUILD + P.POP
            + P.EMPTY_DICT + P.MARK + text("vertices") + P.BINGET + b"\x02"
            + text("faces") + P.EMPTY_LIST + P.SETITEMS + P.STOP)


def test_a_dtype_rebuilt_after_an_array_took_it_does_not_change_the_array(tmp_path):
    path = tmp_path / "rebuilt.bin"
    path.write_bytes(_dtype_rebuilt_after_use())
    got = read_in_child(path, "--pickled-dtype")  # such an array can crash the process
    assert got.get("dtype") == "float32" and got["shape"] == [1, 1, 3], got
    assert got["values"] == [1.0, 2.0, 3.0] and got["pickled_dtype"] == "float64", got


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_clips_still_load_with_every_protocol(tmp_path, protocol):
    frames = np.arange(2 * 4 * 3, dtype=">f8").reshape(2, 4, 3)  # byte-swapped, as some writers do
    path = tmp_path / "clip.bin"
    path.write_bytes(pickle.dumps({"vertices": frames, "faces": np.array([[0, 1, 2], [1, 2, 3]]),
                                   "caption": np.array(["a box bends"]), "fps": np.float32(24),
                                   "empty": np.zeros((0, 3)), "order": np.asfortranarray(frames[0])},
                                  protocol=protocol))
    sample = read_dymesh_bin(path)
    np.testing.assert_array_equal(sample.frames, frames.astype(np.float32))
    assert sample.faces.tolist() == [[0, 1, 2], [1, 2, 3]] and sample.captions == ["a box bends"]


# ---------------------------------------------------------------------------------------------
# Coordinates beyond float32
# ---------------------------------------------------------------------------------------------

TETRA = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
TETRA_FACES = [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]


@pytest.mark.parametrize("vertices, words", [
    (TETRA * [[1], [1e39], [1], [1]], r"overflow float32: vertex 1 has a coordinate of magnitude 1e\+39"),
    (TETRA * -3e38, r"too close to float32's limit of about 3\.4e38: vertex 1 .* magnitude 3e\+38"),
    # below the limit, but the bounding-box centre (max + min) / 2 overflows
    (TETRA + 2.5e38, "too close to float32's limit"),
])
def test_coordinates_beyond_float32_are_named(vertices, words):
    with np.errstate(all="raise"):  # refused before any float32 arithmetic overflows
        with pytest.raises(MeshError, match=words) as info:
            prepare_mesh(vertices, TETRA_FACES)
    assert "3.4e38" in str(info.value) and "Fix: scale the mesh down" in str(info.value)
    with pytest.raises(MeshError, match="float32"):
        validate_mesh(vertices, TETRA_FACES)


def test_large_coordinates_that_fit_still_prepare():
    prepared = prepare_mesh(TETRA * 1e37, TETRA_FACES)
    assert np.isfinite(prepared.normalized).all() and np.isfinite(prepared.denominator)


@pytest.mark.parametrize("coordinate", ["1e39", "-2.5e38"])
def test_cli_names_float32_overflow_before_any_model_work(capsys, tmp_path, coordinate):
    from backend.__main__ import main

    mesh = tmp_path / "far.obj"
    mesh.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 {coordinate}\nf 1 2 3\nf 1 2 4\n")
    model = tmp_path / "model"  # not a loadable model: reaching it would be another error
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "o.npz"
    code = main(["animate", str(mesh), "--prompt", "a cube spins", "--out", str(out),
                 "--model", str(model), "--device", "cpu"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and errors[0] == err.rstrip().splitlines()[-1], err
    assert "float32" in errors[0] and "3.4e38" in errors[0] and "Traceback" not in err, err
    assert "seed" not in errors[0] and not out.exists()

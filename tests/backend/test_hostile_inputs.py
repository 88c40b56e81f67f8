"""Hostile and malformed inputs end in one clear line, never a traceback, a lost file or a
memory bomb (issue 18, the parts that live at the seam and the backend's doors)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from aam_seam import protocol
from aam_seam.limits import MAX_LINE_BYTES
from backend.__main__ import main

CUBE = """v -1 -1 -1\nv 1 -1 -1\nv 1 1 -1\nv -1 1 -1\nv -1 -1 1\nv 1 -1 1\nv 1 1 1\nv -1 1 1
f 1 2 3 4\nf 5 8 7 6\nf 1 5 6 2\nf 2 6 7 3\nf 3 7 8 4\nf 5 1 4 8
"""


@pytest.fixture
def cube(tmp_path):
    path = tmp_path / "cube.obj"
    path.write_text(CUBE)
    return path


def lying_npz(path, shape=(89_000_000, 3)):
    """A tiny .npz whose header declares a huge float64 array."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vertices.npy", header.getvalue() + np.zeros(12).tobytes())
    return path


def run(capsys, *args) -> tuple[int, str]:
    code = main(["animate", *map(str, args)])
    return code, capsys.readouterr().err


def one_line_error(err: str) -> bool:
    """One `error:` line (progress lines may come before it) and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    return len(lines) == 1 and lines[0] == err.rstrip().splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize("extra, words", [
    (["--device", "bogus"], "unknown device"),
    (["--seed", str(2**63)], "seed must be"),
    (["--seed", str(2**70)], "seed must be"),
    (["--seed", "-1"], "seed must be"),
    (["--steps", "100000"], "steps must be"),
    (["--num-traj", "1000000000"], "num_traj"),
    (["--guidance", "nan"], "guidance"),
    (["--prompt", "a cube \udcff spins"], "not UTF-8"),
    (["--prompt", "spin " * 2000], "characters long"),
])
def test_bad_command_line_values_are_one_line_before_any_work(capsys, tmp_path, cube, extra, words):
    args = [cube, "--prompt", "a cube spins", "--out", tmp_path / "o.npz"] + extra
    code, err = run(capsys, *args)
    assert code == 2 and one_line_error(err) and words in err, err
    assert not (tmp_path / "o.npz").exists()


def test_bad_output_paths_are_refused_before_the_model_loads(capsys, tmp_path, cube):
    folder = tmp_path / "taken.npz"
    folder.mkdir()
    for out, extra, words in [(folder, [], "is a folder"),
                              ("/proc/no/such/o.npz", [], "cannot write --out"),
                              (tmp_path / "o.npz", ["--preview", "/proc/no/p.png"], "cannot write --preview"),
                              (tmp_path / "o.npz", ["--preview", tmp_path / "p.jpg"], "must end in .png")]:
        code, err = run(capsys, cube, "--prompt", "spin", "--out", out, "--model", "/nonexistent", *extra)
        # the model path is wrong too: the output is judged first, so no load was attempted
        assert code == 2 and one_line_error(err) and words in err, err


def test_empty_and_lying_mesh_files_are_refused_without_allocating(capsys, tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    lying = lying_npz(tmp_path / "lying.npz")
    for mesh, words in [(empty, "could not read"), (lying, "declares")]:
        code, err = run(capsys, mesh, "--prompt", "spin", "--out", tmp_path / "o.npz")
        assert code == 2 and one_line_error(err) and words in err, err


def test_a_failed_write_leaves_the_earlier_result_intact(capsys, tmp_path, cube, monkeypatch):
    out = tmp_path / "o.npz"
    args = [cube, "--prompt", "a cube spins", "--out", out, "--steps", "2", "--seed", "3"]
    assert run(capsys, *args)[0] == 0
    before = out.read_bytes()

    def disk_full(file, **_arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(27, "File too large")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    code, err = run(capsys, *args[:-1], "4")
    assert code == 2 and one_line_error(err) and "left as it was" in err, err
    assert out.read_bytes() == before
    with np.load(out) as archive:
        assert int(archive["seed"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.obj", "o.npz"]


# ----------------------------------------------------------------------------- the server's door

def serve(lines: list[bytes]) -> list:
    from backend.server import Channel, Server

    out = io.BytesIO()
    server = Server(Channel(out))
    server._read_loop(io.BytesIO(b"".join(lines)))
    return server, [protocol.parse_line(line) for line in out.getvalue().decode().splitlines()]


def raw(**message) -> bytes:
    return (json.dumps({"v": protocol.PROTOCOL_VERSION, **message}) + "\n").encode()


def test_badly_typed_messages_are_answered_and_the_reader_carries_on():
    hello = protocol.Hello(client="test").to_line().encode()
    lines = [raw(type="cancel", id={}), raw(type="animate", id=["a"]),
             raw(type="animate", id="j1", steps="many"), b"x" * (3 * MAX_LINE_BYTES) + b"\n",
             raw(type="animate", id="j2", seed=2**40, prompt="spin", mesh_path="m", out_path="o"),
             raw(type="animate", id="", prompt="spin"), hello]
    server, replies = serve(lines)
    kinds = [(r.type, getattr(r, "code", ""), getattr(r, "id", "")) for r in replies]
    assert kinds == [("error", "bad_message", ""), ("error", "bad_message", ""),
                     ("error", "bad_message", "j1"),   # a typed error still reaches its job
                     ("error", "bad_message", ""),     # the overlong line, dropped unread
                     ("error", "bad_input", "j2"), ("error", "bad_request", ""),
                     ("ready", "", "")], kinds          # and the next valid request is answered
    assert "steps" in replies[2].message and "longer than" in replies[3].message
    assert "seed must be" in replies[4].message
    queued = []
    while not server.work.empty():
        queued.append(server.work.get_nowait())
    assert queued == [None]  # nothing was queued but the stop at the end of input


def test_a_failure_while_handling_one_message_does_not_kill_the_reader(monkeypatch):
    from backend import server as server_module

    def broken(*_args):
        raise RuntimeError("device query failed")

    monkeypatch.setattr(server_module, "available_devices", broken)
    hello = protocol.Hello(client="test").to_line().encode()
    _, replies = serve([hello, protocol.Cancel(id="nothing").to_line().encode(), hello])
    assert [r.type for r in replies] == ["error", "error"]
    assert all("device query failed" in r.message for r in replies)


def test_a_job_that_fails_inside_is_one_line_for_the_user_and_a_traceback_in_the_log(monkeypatch, caplog):
    from backend.server import Channel, Server

    def crash(self, request):
        raise KeyError("a bug")

    monkeypatch.setattr(Server, "animate", crash)
    out = io.BytesIO()
    Server(Channel(out)).run_job(protocol.AnimateRequest(id="j", prompt="spin"))
    (reply,) = [protocol.parse_line(line) for line in out.getvalue().decode().splitlines()]
    assert (reply.type, reply.code, reply.id) == ("error", "internal", "j")
    assert "KeyError" in reply.message and "backend log" in reply.message and "\n" not in reply.message
    assert "Traceback" in caplog.text


def test_a_lying_npz_is_refused_within_a_small_memory_limit(tmp_path):
    """In a child held to 1.5 GB of address space (an allocation of the declared 2 GB would end
    it in MemoryError): the forged header is refused first, by every reader of mesh files."""
    import subprocess
    import sys
    import textwrap

    from blender_util import REPO

    lying = lying_npz(tmp_path / "lying.npz")
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024**2, 1536 * 1024**2))
        sys.path.insert(0, {str(REPO)!r})
        from aam_seam.arrays import read_mesh_file
        from aam_seam.codes import SeamError
        from backend.errors import MeshError
        from backend.mesh_io import load_mesh
        for read in (read_mesh_file, load_mesh):
            try:
                read({str(lying)!r})
            except (SeamError, MeshError) as exc:
                print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len([line for line in lines if line.startswith("refused:") and "declares" in line]) == 2

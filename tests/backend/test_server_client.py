"""The backend process and the add-on's client, with real subprocesses and a real tiny model.

No Blender here: the client is standard library + numpy, exactly what runs inside Blender.
The model is the tiny official-layout checkpoint of the parity fixtures, imported once.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from aam_seam.protocol import PROTOCOL_VERSION
# The add-on package imports no bpy until register(), so its client imports here as in Blender.
from animateanymesh_addon.backend_client import BackendClient, BackendError, Polygons

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a flag waves in the wind"
FAST = {"steps": 4, "num_traj": 8}


# ----------------------------------------------------------------------------- fixtures

def grid_mesh():
    """A 6 x 4 grid of quads where two quads are merged into one hexagon (mixed polygons)."""
    rows, cols = 6, 4
    x, y = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    vertices = np.stack([x, y, 0.3 * np.sin(x + y) + 0.1 * x * y], -1).reshape(-1, 3)

    def vid(i, j):
        return i * cols + j

    faces = [[vid(i, j), vid(i + 1, j), vid(i + 1, j + 1), vid(i, j + 1)]
             for i in range(rows - 1) for j in range(cols - 1)]
    faces[:2] = [[vid(0, 0), vid(1, 0), vid(1, 1), vid(1, 2), vid(0, 2), vid(0, 1)]]
    return vertices, faces


VERTICES, FACES = grid_mesh()


@pytest.fixture(scope="session")
def tiny_model(fixtures_dir, tmp_path_factory) -> Path:
    from backend.official_import import import_official

    out = tmp_path_factory.mktemp("models") / "tiny"
    import_official(fixtures_dir / "official_layout", out,
                    clip_config=fixtures_dir / "clip_text_config.json",
                    tokenizer_dir=fixtures_dir / "tokenizer", name="tiny")
    # A vocabulary without "wind": PROMPT earns a warning, so the round trip shows warnings travel.
    from backend.vocabulary import Vocabulary

    Vocabulary.from_captions(["the flag waves in a breeze"]).save(out)
    return out


def make_client(tmp: Path, **kwargs) -> BackendClient:
    return BackendClient(sys.executable, str(REPO), str(tmp / "work"), str(tmp / "backend.log"), **kwargs)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    c = make_client(tmp_path_factory.mktemp("client"))
    yield c
    c.shutdown()


def collect(job, timeout: float = 60.0, on_message=None) -> list:
    """Poll like Blender's modal timer until the job ends; every message, in order."""
    deadline = time.monotonic() + timeout
    messages = []
    while not job.finished and time.monotonic() < deadline:
        for message in job.poll():
            messages.append(message)
            if on_message:
                on_message(message)
        time.sleep(0.005)
    assert job.finished, f"job still {job.state} ({job.progress}) after {timeout} s"
    return messages


def stages(messages) -> list[str]:
    """Progress stages in order of arrival, repeats collapsed."""
    out = []
    for m in messages:
        if m.type == "progress" and (not out or out[-1] != m.stage):
            out.append(m.stage)
    return out


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan's zombie may linger when
    the container's init does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------- round trip

@pytest.mark.slow
def test_round_trip_matches_a_direct_pipeline_call(client, tiny_model):
    import backend
    from backend.model_folder import load_model
    from backend.pipeline import animate

    info = client.start()
    assert info.backend_version == backend.__version__ and "cpu" in info.devices and info.torch_version

    job = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), seed=7, **FAST)
    folder = client.work_dir / "jobs" / job.id
    assert (folder / "mesh.npz").is_file()
    messages = collect(job)

    assert job.state == "done", job.error
    assert stages(messages) == ["load", "prepare", "encode", "text", "sample", "decode", "write"]
    samples = [(m.step, m.total) for m in messages if m.type == "progress" and m.stage == "sample"]
    total = samples[0][1]
    assert samples == [(i, total) for i in range(1, total + 1)]  # every evaluation, in order
    assert messages[-1].type == "result" and messages[-1].seed == 7
    assert job.progress == ("write", 1, 1)
    assert not folder.exists()  # the job cleans up after itself

    frames = job.result_frames()
    direct = animate(VERTICES, FACES, PROMPT, model=load_model(tiny_model, "cpu"), seed=7, **FAST)
    assert frames.shape == direct.frames.shape == (direct.frames.shape[0], len(VERTICES), 3)
    assert frames.dtype == np.float32
    np.testing.assert_allclose(frames, direct.frames, rtol=0, atol=1e-6)
    assert job.warnings == direct.warnings and any("'wind'" in w for w in job.warnings)
    assert client.garbled_lines == 0  # nothing but protocol lines came through stdout

    # the request's length and strength cross the seam and mean what they mean in the API
    shaped = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), seed=7, frames=31,
                           strength=0.5, **FAST)
    collect(shaped)
    expected = animate(VERTICES, FACES, PROMPT, model=load_model(tiny_model, "cpu"), seed=7,
                       frames=31, strength=0.5, **FAST)
    np.testing.assert_allclose(shaped.result_frames(), expected.frames, rtol=0, atol=1e-6)
    assert shaped.result_frames().shape[0] == 31


@pytest.mark.slow
def test_model_stays_warm_and_shutdown_frees_it(client, tiny_model):
    client.start()
    flat = np.concatenate([np.asarray(f) for f in FACES])
    sizes = [len(f) for f in FACES]
    # Polygons (flat + sizes) is what Blender's foreach_get gives; same mesh, same result.
    first = client.submit(VERTICES, Polygons(flat, sizes), PROMPT, model=str(tiny_model), seed=1, **FAST)
    second = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), seed=1, **FAST)
    collect(first)  # it loads the model unless an earlier test left it warm
    second_messages = collect(second)
    assert first.state == second.state == "done"
    assert "load" not in stages(second_messages)  # warm: loaded once, kept
    np.testing.assert_array_equal(first.result_frames(), second.result_frames())

    client.shutdown()  # Release Memory: the process and its model are gone
    assert not client.is_alive()
    again = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), seed=1, **FAST)
    assert stages(collect(again))[0] == "load"
    assert again.state == "done"


# ----------------------------------------------------------------------------- failures

@pytest.mark.slow
def test_bad_requests_fail_with_a_code_and_a_sentence_and_the_server_carries_on(client, tiny_model):
    client.start()
    pid = client.pid
    nan_vertices = VERTICES.copy()
    nan_vertices[5, 1] = np.nan
    cases = [
        (dict(vertices=nan_vertices, prompt=PROMPT), "bad_mesh", "NaN"),
        (dict(vertices=VERTICES, prompt="   "), "bad_prompt", "prompt"),
        (dict(vertices=VERTICES, prompt=PROMPT, model="no-such-model"), "model_not_found", "no-such-model"),
        (dict(vertices=VERTICES, prompt=PROMPT, steps=1), "bad_input", "steps"),
        # A field of the wrong type is refused at the door, and the refusal reaches its job.
        (dict(vertices=VERTICES, prompt=PROMPT, seed="not-a-number"), "bad_message", "seed"),
    ]
    for case, code, word in cases:
        options = {"model": str(tiny_model), **FAST, **{k: v for k, v in case.items()
                                                         if k not in ("vertices", "prompt")}}
        job = client.submit(case["vertices"], FACES, case["prompt"], **options)
        collect(job, timeout=30)
        assert job.state == "error", case
        assert job.error[0] == code, job.error
        assert word in job.error[1] and "\n" not in job.error[1] and "Traceback" not in job.error[1]
        assert not (client.work_dir / "jobs" / job.id).exists()
        with pytest.raises(BackendError):
            job.result_frames()

    good = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), **FAST)
    collect(good)
    assert good.state == "done" and good.result_frames().shape[1] == len(VERTICES)
    assert client.pid == pid  # the same process served everything


@pytest.mark.slow
def test_cancel_halfway_then_animate_again(client, tiny_model):
    client.start()
    job = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), steps=200, num_traj=8)
    asked = {}

    def cancel_at_first_sample(message):
        if message.type == "progress" and message.stage == "sample" and not asked:
            asked["at"] = time.monotonic()
            asked["total"] = message.total
            job.cancel()

    messages = collect(job, timeout=60, on_message=cancel_at_first_sample)
    assert job.state == "cancelled"
    assert time.monotonic() - asked["at"] < 5.0
    last_step = max(m.step for m in messages if m.type == "progress" and m.stage == "sample")
    assert last_step < asked["total"] // 4  # it stopped long before the end
    assert not (client.work_dir / "jobs" / job.id).exists()

    after = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), **FAST)
    collect(after)
    assert after.state == "done"


@pytest.mark.slow
def test_killed_backend_fails_the_job_and_restarts_on_the_next_submit(client, tiny_model):
    client.start()
    pid = client.pid
    job = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), steps=200, num_traj=8)

    def kill_at_first_sample(message):
        if message.type == "progress" and message.stage == "sample" and running(pid):
            os.kill(pid, signal.SIGKILL)

    collect(job, timeout=30, on_message=kill_at_first_sample)
    assert job.state == "error" and job.error[0] == "backend_died"
    assert "restart on the next Animate" in job.error[1] and str(client.log_path) in job.error[1]
    assert not client.is_alive()

    again = client.submit(VERTICES, FACES, PROMPT, model=str(tiny_model), **FAST)
    collect(again)
    assert again.state == "done"
    assert client.is_alive() and client.pid != pid


@pytest.mark.slow
def test_shutdown_stops_the_process(tmp_path):
    c = make_client(tmp_path)
    c.start()
    pid = c.pid
    assert c.is_alive() and c.info.type == "ready"
    c.shutdown(timeout=5)
    assert not c.is_alive() and wait_gone(pid, 5.0)
    assert "backend stopped: shutdown requested" in c.log_path.read_text()


def test_the_backends_threads_sleep_while_they_wait(tmp_path, monkeypatch):
    # spinning OpenMP threads made an Animate 18x slower with one core busy elsewhere
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert make_client(tmp_path).child_env()["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")     # a user's own choice stands
    assert make_client(tmp_path).child_env()["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_thread_count_reaches_the_backends_torch(tmp_path):
    # torch's own default, from a fresh interpreter (this one may have set its count)
    default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    for threads, expected in ((1, 1), (0, default)):
        c = make_client(tmp_path / str(threads), threads=threads)
        c.start()
        c.shutdown(timeout=5)
        assert f"{expected} threads)" in c.log_path.read_text(), c.log_path.read_text()[-500:]


# ----------------------------------------------------------------------------- the channel

def test_stdout_is_reserved_for_protocol_lines(tmp_path):
    """Whatever writes to stdout after startup (print, raw fd 1, a child process) lands on stderr."""
    script = textwrap.dedent("""
        import os, subprocess, sys
        from aam_seam import protocol
        from backend.server import Channel, claim_protocol_channel
        channel = Channel(claim_protocol_channel())
        print("stray print")
        sys.stdout.flush()
        os.write(1, b"stray fd write\\n")
        subprocess.run([sys.executable, "-c", "print('child output')"], check=True)
        channel.send(protocol.Heartbeat(busy=True))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == {"busy": True, "type": "heartbeat",
                                                        "v": PROTOCOL_VERSION}
    for text in ("stray print", "stray fd write", "child output"):
        assert text in done.stderr.decode()


def test_server_answers_bad_lines_with_errors_and_keeps_reading():
    from aam_seam import protocol
    from backend.server import Channel, Server

    out = io.BytesIO()
    server = Server(Channel(out))
    hello = protocol.Hello(client="test").to_line().encode()
    lines = [b"this is not json\n", b'{"type":"hello","v":99}\n', hello,
             protocol.Cancel(id="nothing-running").to_line().encode(),
             protocol.Shutdown().to_line().encode(), hello]
    server._read_loop(io.BytesIO(b"".join(lines)))
    replies = [protocol.parse_line(line) for line in out.getvalue().decode().splitlines()]
    assert [(r.type, getattr(r, "code", "")) for r in replies] == [
        ("error", "bad_message"), ("error", "protocol_version"), ("ready", "")]
    assert [s["name"] for s in replies[2].solvers]  # the backend says which solvers it has
    assert "reinstall" in replies[1].message
    assert server.stopping.is_set() and server.stop_reason == "shutdown requested"
    assert server.work.get_nowait() is None  # the main loop is told to finish


# ----------------------------------------------------------------------------- parent death

@pytest.mark.slow
def test_server_exits_when_its_parent_dies():
    # A shell starts the server in the background (stdin explicitly kept: the pipe we hold, so
    # EOF cannot be what stops it) and is then killed; the orphaned server must notice.
    shell = subprocess.Popen(
        ["bash", "-c", f"'{sys.executable}' -m backend.server <&0 & echo $!; wait"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    server_pid = int(shell.stdout.readline())
    try:
        assert json.loads(shell.stdout.readline())["type"] == "heartbeat"  # up and speaking
        os.kill(shell.pid, signal.SIGKILL)
        shell.wait()
        assert wait_gone(server_pid, 5.0), "the orphaned backend kept running"
    finally:
        if running(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        shell.stdin.close()
        shell.stdout.close()


# ----------------------------------------------------------------------------- versions and setup

FAKE_SERVER = r"""
# A stand-in backend (standard library only, starts in milliseconds) that misbehaves on purpose.
import json, os, sys, time
mode = os.environ["FAKE_MODE"]
VERSION = int(os.environ["FAKE_VERSION"])

def send(version=VERSION, **message):
    sys.stdout.write(json.dumps({"v": version, **message}) + "\n")
    sys.stdout.flush()

sys.stdin.readline()  # the hello
if mode == "mismatch":
    print("garbage that is not a protocol line", flush=True)
    send(version=VERSION + 1, type="ready", backend_version="9.0")
elif mode == "broken":
    send(type="error", code="backend_broken", message="torch is missing: run Set up backend again.")
elif mode == "crash":
    import numpy_that_was_never_installed  # dies as a half-built environment does
else:
    send(type="ready", backend_version="0.0-fake", torch_version="none", devices=["cpu"])
    request = json.loads(sys.stdin.readline())
    send(type="progress", id=request["id"], stage="sample", step=1, total=10)
    while mode == "deaf":  # alive and beating, but it never acts on the cancel
        send(type="heartbeat", busy=True)
        time.sleep(0.2)
sys.stdin.read()  # "silent": hangs without a word until the client closes stdin
"""


def fake_backend(root: Path) -> Path:
    package = root / "backend"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "server.py").write_text(FAKE_SERVER)
    return root


def fake_client(tmp: Path, mode: str, **kwargs) -> BackendClient:
    return BackendClient(sys.executable, str(fake_backend(tmp / mode)), str(tmp / "work"),
                         str(tmp / "backend.log"),
                         env={"FAKE_MODE": mode, "FAKE_VERSION": str(PROTOCOL_VERSION)}, **kwargs)


def test_a_silent_backend_is_caught_by_the_heartbeat_watchdog(tmp_path):
    c = fake_client(tmp_path, "silent", heartbeat_timeout=1.5)
    c.start(timeout=20)
    pid = c.pid
    job = c.submit(VERTICES, FACES, PROMPT)
    started = time.monotonic()
    collect(job, timeout=20)
    assert job.state == "error" and job.error[0] == "backend_died"
    assert "stopped answering" in job.error[1] and str(c.log_path) in job.error[1]
    assert 1.4 < time.monotonic() - started < 8
    assert wait_gone(pid, 5.0) and not c.is_alive()


def test_cancel_works_even_when_the_backend_ignores_it(tmp_path):
    c = fake_client(tmp_path, "deaf", cancel_timeout=1.0)
    c.start(timeout=20)
    pid = c.pid
    job = c.submit(VERTICES, FACES, PROMPT)
    collect(job, timeout=20, on_message=lambda m: m.type == "progress" and job.cancel())
    assert job.state == "cancelled"
    assert wait_gone(pid, 5.0) and not c.is_alive()


def test_a_backend_from_another_release_is_refused_with_a_clear_error(tmp_path):
    # The backend answers in another version: the handshake fails, garbage is ignored.
    c = fake_client(tmp_path, "mismatch")
    with pytest.raises(BackendError, match="reinstall") as err:
        c.start(timeout=20)
    assert err.value.code == "protocol_version" and c.garbled_lines == 1
    with pytest.raises(BackendError, match="reinstall"):  # restarting the same backend cannot help
        c.submit(VERTICES, FACES, PROMPT)
    c.shutdown(timeout=1)


def test_a_backend_that_cannot_work_says_why(tmp_path):
    c = fake_client(tmp_path, "broken")
    with pytest.raises(BackendError, match="Set up backend") as err:
        c.start(timeout=20)
    assert err.value.code == "backend_broken"
    c.shutdown(timeout=1)

    # A backend that dies on start: the error carries the cause from its log, not only the path.
    crashing = fake_client(tmp_path, "crash")
    with pytest.raises(BackendError, match="No module named 'numpy_that_was_never_installed'") as err:
        crashing.start(timeout=20)
    assert err.value.code == "backend_died" and str(crashing.log_path) in err.value.message
    crashing.shutdown(timeout=1)

    missing = BackendClient(str(tmp_path / "no-python"), str(REPO), str(tmp_path / "w"), str(tmp_path / "log"))
    with pytest.raises(BackendError, match="Set up backend") as err:
        missing.submit(VERTICES, FACES, PROMPT)
    assert err.value.code == "backend_not_set_up"
    with pytest.raises(TypeError, match="unknown animate option"):
        missing.submit(VERTICES, FACES, PROMPT, stepz=4)


def test_the_seam_is_loaded_by_path_without_touching_sys_path():
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        before = list(sys.path)
        from animateanymesh_addon import seam
        assert sys.path == before
        assert seam.protocol.__name__ == "_animateanymesh_seam.protocol"
        assert "aam_seam" not in sys.modules  # loaded under its private name only
        print(seam.protocol.AnimateRequest(id="a", prompt="p", steps=3, solver="x").to_line(), end="")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    from aam_seam import protocol
    assert protocol.parse_line(done.stdout) == protocol.AnimateRequest(id="a", prompt="p", steps=3,
                                                                        solver="x")


def test_the_client_needs_neither_torch_nor_bpy():
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from animateanymesh_addon import backend_client
        print(sorted(name for name in ("torch", "bpy", "backend") if name in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

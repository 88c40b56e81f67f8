"""`python -m backend batch`: the jobs file, the local queue, resuming, and Ray workers that die."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from aam_seam.limits import DEFAULT_LOOP
from backend.__main__ import main as backend_main
from backend.batch_jobs import BatchStatus, read_jobs
from backend.batch_run import BatchSettings, Reporter, run_batch
from backend.errors import UserError
from backend.mesh_io import save_obj

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def grid(n=5):
    xs, ys = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    verts = np.stack([xs.ravel(), ys.ravel(), 0.1 * np.sin(3 * xs.ravel())], axis=1)
    faces = [[i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j]
             for i in range(n - 1) for j in range(n - 1)]
    return verts, np.array(faces)


def write_jobs(folder, lines):
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture
def mesh_folder(tmp_path):
    save_obj(tmp_path / "grid.obj", *grid())
    return tmp_path


def test_every_problem_of_a_jobs_file_is_named_before_anything_runs(mesh_folder, tiny_model_dir, capsys):
    jobs = write_jobs(mesh_folder, [
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "a.npz"},
        "{not json",
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "b.npz", "prompts": ["x"]},
        {"mesh": "grid.obj", "out": "c.npz"},
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "d.npz", "seed": "three"},
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "e.npz", "quality": "ultra"},
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "a.npz"},
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "f.obj"},
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "g.npz", "keep_shape": "rigid"},
    ])
    with pytest.raises(UserError) as caught:
        read_jobs(jobs)
    text = str(caught.value)
    for expected in ("line 2: not JSON", "line 3: unknown key 'prompts'", "line 4: 'prompt' is missing",
                     "line 5: 'seed' must be an integer", "line 6: unknown quality 'ultra'",
                     "line 7: writes a.npz as line 1 does", "line 8: 'out' must end in .npz",
                     "line 9: unknown keep shape mode 'rigid'", "Nothing was run"):
        assert expected in text, (expected, text)
    assert backend_main(["batch", str(jobs), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "line 3" in err
    assert not (mesh_folder / "jobs.status.json").exists() and not (mesh_folder / "a.npz").exists()


def test_options_keep_their_animate_names_and_paths_follow_the_jobs_file(mesh_folder):
    (jobs,) = read_jobs(write_jobs(mesh_folder, [
        {"id": "wave", "mesh": "grid.obj", "prompt": "a flag waves", "out": "takes/w.npz",
         "then": "a flag spins", "repeat": 2, "loop": True, "quality": "Draft", "variations": 2,
         "mask": "weights.npz:legs", "keep_shape": "off"}]))
    assert jobs.mesh == mesh_folder / "grid.obj" and jobs.out == mesh_folder / "takes" / "w.npz"
    assert jobs.then == ["a flag spins", "a flag waves", "a flag spins"]
    assert jobs.options["loop"] == DEFAULT_LOOP
    assert jobs.options["quality"] == "draft" and jobs.options["keep_shape"] == "off"
    assert jobs.options["mask"] == f"{mesh_folder / 'weights.npz'}:legs"
    assert [p.name for p in jobs.outputs()] == ["w_1.npz", "w_2.npz"]


def test_the_local_queue_runs_every_job_fails_only_the_bad_one_and_resumes(mesh_folder, tiny_model_dir,
                                                                          capsys):
    jobs = write_jobs(mesh_folder, [
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "out/a.npz", "seed": 5, "steps": 2},
        {"mesh": "nowhere.obj", "prompt": "a flag waves", "out": "out/b.npz", "steps": 2},
        {"mesh": "grid.obj", "prompt": "a flag waves", "out": "out/c.npz", "seed": 7, "steps": 2,
         "variations": 2},
    ])
    args = ["batch", str(jobs), "--model", str(tiny_model_dir), "--threads", "1"]
    assert backend_main(args) == 1            # one job failed
    status = json.loads((mesh_folder / "jobs.status.json").read_text())
    states = {job["id"]: job for job in status["jobs"]}
    assert {k: v["state"] for k, v in states.items()} == {"a": "done", "b": "failed", "c": "done"}
    assert states["b"]["error_code"] == "bad_mesh" and "nowhere.obj" in states["b"]["error"]
    assert states["c"]["seeds"] == [7, 8] and len(states["c"]["outputs"]) == 2

    # the same request through `animate` gives the same file content
    single = mesh_folder / "single.npz"
    assert backend_main(["animate", str(mesh_folder / "grid.obj"), "--prompt", "a flag waves",
                         "--model", str(tiny_model_dir), "--threads", "1", "--seed", "5",
                         "--steps", "2", "--out", str(single)]) == 0
    batch, alone = np.load(mesh_folder / "out" / "a.npz"), np.load(single)
    assert sorted(batch.files) == sorted(alone.files)
    np.testing.assert_array_equal(batch["frames"], alone["frames"])
    assert int(batch["seed"]) == 5
    capsys.readouterr()

    # running again skips what is done; a removed output makes its job run again
    before = (mesh_folder / "out" / "c_1.npz").stat().st_mtime_ns
    (mesh_folder / "out" / "a.npz").unlink()
    assert backend_main(args) == 1
    err = capsys.readouterr().err
    assert "1 of 3 jobs were done by an earlier run" in err
    assert (mesh_folder / "out" / "a.npz").exists()
    assert (mesh_folder / "out" / "c_1.npz").stat().st_mtime_ns == before


def test_ray_batch_survives_a_worker_killed_mid_batch(mesh_folder, tiny_model_dir):
    lines = [{"mesh": "grid.obj", "prompt": "a flag waves", "out": f"out/{i}.npz", "seed": i,
              "steps": 2} for i in range(6)]
    jobs = read_jobs(write_jobs(mesh_folder, lines))
    status = BatchStatus(jobs, mesh_folder / "status.json", max_attempts=2)
    events, killed = [], []

    def listen(event):
        events.append(event)
        starts = [e for e in events if e["event"] == "started"]
        # the third start goes to the worker that finished first: kill it while it holds a job
        if event["event"] == "started" and len(starts) == 3 and not killed:
            killed.append((event["job"], event["pid"]))
            os.kill(event["pid"], signal.SIGKILL)

    counts = run_batch(jobs, status, BatchSettings(model=str(tiny_model_dir), max_attempts=2),
                       Reporter(len(jobs), listener=listen, quiet=True), use_ray=True, workers=2)
    assert counts["done"] == 6 and counts["failed"] == 0, [e for e in events if e["event"] != "started"]
    victim, pid = killed[0]
    done = [e["job"] for e in events if e["event"] == "done"]
    assert sorted(done) == sorted(job.id for job in jobs)          # every job finished exactly once
    assert [e["job"] for e in events if e["event"] == "retry"] == [victim]
    assert any(e["event"] == "worker_died" and str(pid) in e["worker"] for e in events)
    saved = {job["id"]: job for job in json.loads((mesh_folder / "status.json").read_text())["jobs"]}
    assert saved[victim]["attempts"] == 2 and str(pid) not in saved[victim]["worker"]
    assert sum(job["attempts"] for job in saved.values()) == 7
    for job in jobs:
        with np.load(job.out) as data:
            assert data["frames"].shape[1:] == (25, 3) and int(data["seed"]) == int(job.id)


def test_ray_missing_or_unreachable_is_one_line(mesh_folder, tiny_model_dir, monkeypatch, capsys):
    jobs = write_jobs(mesh_folder, [{"mesh": "grid.obj", "prompt": "a flag waves", "out": "a.npz"}])
    monkeypatch.setitem(sys.modules, "ray", None)     # as if the extra were not installed
    assert backend_main(["batch", str(jobs), "--model", str(tiny_model_dir), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "requirements-ray.txt" in err and "Traceback" not in err
    status = json.loads((mesh_folder / "jobs.status.json").read_text()) \
        if (mesh_folder / "jobs.status.json").exists() else {"jobs": [{"state": "queued"}]}
    assert all(job["state"] == "queued" for job in status["jobs"])
    monkeypatch.delitem(sys.modules, "ray")
    for address, says in (("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
                          ("nowhere", "is not HOST:PORT")):
        assert backend_main(["batch", str(jobs), "--model", str(tiny_model_dir), "--ray", address]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err


HEAD = """
import sys, ray
context = ray.init(num_cpus=1, include_dashboard=False)
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()          # the cluster lives until the test closes our stdin
ray.shutdown()
"""


def test_ray_batch_joins_a_running_cluster_from_the_command_line(mesh_folder, tiny_model_dir):
    """The remote path: the backend's code travels to the workers (py_modules), events as JSON."""
    jobs = write_jobs(mesh_folder, [{"mesh": "grid.obj", "prompt": "a flag waves", "out": f"{i}.npz",
                                     "steps": 2, "seed": i} for i in range(2)])
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": ""}   # Ray's default auth
    head = subprocess.Popen([sys.executable, "-c", HEAD], cwd=mesh_folder, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        address = head.stdout.readline().strip()
        assert address, "the head did not start"
        command = [sys.executable, "-m", "backend", "batch", str(jobs), "--model",
                   str(tiny_model_dir), "--ray", address, "--events"]
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        events = [json.loads(line) for line in run.stdout.splitlines()]
        assert sorted(e["job"] for e in events if e["event"] == "done") == ["0", "1"]
        assert "batch finished: 2 done" in run.stderr

        # Blender's Animate Collection stops a Ray batch with SIGTERM: the unfinished jobs are
        # recorded as cancelled and it exits 130 (Ray's own SIGTERM handler must not win)
        slow = write_jobs(mesh_folder, [{"mesh": "grid.obj", "prompt": "a flag waves",
                                         "out": f"slow{i}.npz", "steps": 40, "seed": i} for i in range(3)])
        proc = subprocess.Popen([*command[:3], "batch", str(slow), *command[5:], "--workers", "1"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        for line in proc.stdout:
            if '"started"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        head.stdin.close()
        head.wait(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    states = [job["state"] for job in json.loads((mesh_folder / "jobs.status.json").read_text())["jobs"]]
    assert "cancelled" in states and "running" not in states and "queued" not in states, states


def test_the_seams_job_lines_and_meshes_are_what_the_backend_reads(tmp_path):
    from aam_seam import batch as seam
    from aam_seam.arrays import Polygons
    from backend.batch_jobs import OPTION_KEYS
    from backend.mesh_io import load_mesh, load_weights

    assert tuple(OPTION_KEYS) == seam.OPTION_NAMES
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float32)
    polygons = Polygons(np.array([0, 1, 2, 3, 1, 4, 2]), np.array([4, 3]))
    seam.write_job_mesh(tmp_path / "m.npz", verts, polygons, mask=np.array([0, 1, 1, 0, 1]))
    vertices, faces = load_mesh(tmp_path / "m.npz")
    np.testing.assert_array_equal(vertices, verts)
    assert np.asarray(faces).tolist() == [[0, 1, 2, 3], [1, 4, 2, -1]]   # -1: the polygon ended
    line = seam.job_line("7", tmp_path / "m.npz", "a flag waves", tmp_path / "o.npz", seed=3,
                         then=["a flag spins"], loop=None, mask=f"{tmp_path / 'm.npz'}:mask")
    (job,) = read_jobs(write_jobs(tmp_path, [line]))
    assert (job.id, job.options["seed"], job.then) == ("7", 3, ["a flag spins"])
    np.testing.assert_array_equal(load_weights(job.options["mask"]), [0, 1, 1, 0, 1])
    with pytest.raises(TypeError):
        seam.job_line("1", "m", "p", "o.npz", colour="red")
    assert seam.parse_event('{"event": "done", "job": "7"}')["job"] == "7"
    assert seam.parse_event("Ray started") is None and seam.parse_event('{"event": "x"}') is None

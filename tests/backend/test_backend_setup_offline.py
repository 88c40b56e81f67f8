"""Set up backend for real (a venv and pip), with the network cut off: from a wheelhouse it
works, without one it names the network, and a set-up stopped halfway is never used."""

from __future__ import annotations

import sys
import time

import pytest

from animateanymesh_addon import backend_setup as bs
from tiny_wheel import NO_NETWORK, tiny_wheel

def run(steps, tmp_path, cancel_during: str = "") -> bs.BackgroundTask:
    task = bs.BackgroundTask("Set up backend", steps, cwd=tmp_path, env=NO_NETWORK,
                             log_path=tmp_path / "setup.log").start()
    if cancel_during:
        index = [s.label for s in steps].index(cancel_during)
        deadline = time.monotonic() + 60
        while task.step_index < index and not task.finished and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        task.cancel()
    task.wait(120)
    return task


@pytest.mark.slow
def test_offline_set_up_from_a_wheelhouse_and_what_happens_without_one(tmp_path):
    env_dir, wheels = tmp_path / "env", tmp_path / "wheelhouse"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinydep==1.0\n")
    tiny_wheel(wheels)
    check = "import tinydep; print('backend ok', tinydep.VALUE)"

    # no wheelhouse: pip can only ask the index, which cannot be reached; the message says so
    failed = run(bs.setup_steps([sys.executable], env_dir, requirements, check_script=check), tmp_path)
    assert failed.state == "error" and "could not be reached" in failed.error, failed.error
    assert "Connection refused" in failed.error and "Wheelhouse" in failed.error
    assert bs.environment_state(env_dir, requirements) == "incomplete"
    with pytest.raises(bs.SetupError, match="incomplete"):
        bs.resolve_backend_python("AUTO", "", tmp_path / "no-checkout", env_dir, environ={},
                                  requirements=requirements)

    # the same environment repaired from the wheelhouse, still with no network
    done = run(bs.setup_steps([sys.executable], env_dir, requirements, wheelhouse=str(wheels),
                              check_script=check), tmp_path)
    assert done.state == "done", done.error
    assert bs.environment_state(env_dir, requirements) == "ready"
    found = bs.resolve_backend_python("AUTO", "", tmp_path / "no-checkout", env_dir, environ={},
                                      requirements=requirements)
    assert found == bs.Interpreter(str(bs.venv_python(env_dir)), "Set up backend")

    # new requirements: the verified environment no longer counts
    requirements.write_text("tinydep==1.0\n# a new release\n")
    assert bs.environment_state(env_dir, requirements) == "outdated"

    # a set-up stopped halfway (during its check) leaves the environment incomplete and unused
    slow = "import time; time.sleep(30)"
    stopped = run(bs.setup_steps([sys.executable], env_dir, requirements, wheelhouse=str(wheels),
                                 check_script=slow), tmp_path, cancel_during="Checking the backend")
    assert stopped.state == "cancelled"
    assert bs.environment_state(env_dir, requirements) == "incomplete"
    with pytest.raises(bs.SetupError, match="Repair"):
        bs.resolve_backend_python("AUTO", "", tmp_path / "no-checkout", env_dir, environ={},
                                  requirements=requirements)


def test_a_missing_wheelhouse_is_refused_with_the_way_to_make_one(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinydep==1.0\n")
    with pytest.raises(bs.SetupError, match="build.py --wheelhouse"):
        bs.setup_steps([sys.executable], tmp_path / "env", requirements,
                       wheelhouse=str(tmp_path / "nowhere"))


def test_the_wheelhouse_command_fetches_binary_wheels_of_the_shipped_requirements(tmp_path):
    import importlib.util

    from blender_util import REPO

    spec = importlib.util.spec_from_file_location("aam_build", REPO / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    command = build.wheelhouse_command(tmp_path / "wheels", "win_amd64", "3.11")
    assert command[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in command
    assert command[command.index("-r") + 1] == str(REPO / "requirements.txt")
    assert command[command.index("-d") + 1] == str(tmp_path / "wheels")
    assert command[command.index("--platform") + 1] == "win_amd64"
    assert command[command.index("--python-version") + 1] == "3.11"

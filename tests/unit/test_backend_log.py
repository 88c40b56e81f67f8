"""The add-on tells why the backend stopped, from the newest run's part of its log."""

from __future__ import annotations

from animateanymesh_addon.backend_client import START_MARK, failure_cause


def test_the_cause_is_the_newest_runs_error_line(tmp_path):
    log = tmp_path / "backend.log"
    log.write_text(
        f"\n{START_MARK} 2026-01-01 10:00:00: python -m backend.server\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'old failure'\n"
        f"\n{START_MARK} 2026-01-01 11:00:00: python -m backend.server\n"
        "2026-01-01 11:00:01 INFO [server 1] starting\n"
        "Traceback (most recent call last):\n  File \"<frozen runpy>\", line 88, in _run_code\n"
        "    import numpy\nModuleNotFoundError: No module named 'numpy'\n\n")
    assert failure_cause(log) == "ModuleNotFoundError: No module named 'numpy'"


def test_a_python_that_cannot_find_the_backend_and_a_clean_log(tmp_path):
    log = tmp_path / "backend.log"
    log.write_text(f"{START_MARK} t: python -m backend.server\n/usr/bin/python: Error while finding "
                   "module specification for 'backend.server' (ModuleNotFoundError: No module "
                   "named 'backend')\n")
    assert "No module named 'backend'" in failure_cause(log)
    log.write_text(f"{START_MARK} t: python -m backend.server\n2026 INFO ready\n")
    assert failure_cause(log) == ""
    assert failure_cause(tmp_path / "missing.log") == ""

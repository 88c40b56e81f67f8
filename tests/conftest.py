import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "official_parity"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # blender_util, shared by the tiers


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "blender: runs real Blender through the bpy wheel")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def load_fixture(fixtures_dir):
    from safetensors.torch import load_file

    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = load_file(str(fixtures_dir / name))
        return cache[name]

    return load


@pytest.fixture(scope="session")
def load_script():
    """A script (a plain file, not in a package) as the command line would run it: from scripts/,
    or from FOLDER (relative to the repository root, e.g. research/probes)."""
    import importlib.util

    def load(name: str, folder: str = "scripts"):
        spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, fixtures_dir):
    """The fixture's official-layout checkpoint imported as a real (tiny, random-weight) model."""
    from backend.official_import import import_official

    out = tmp_path_factory.mktemp("tiny") / "official_tiny"
    import_official(fixtures_dir / "official_layout", out,
                    clip_config=fixtures_dir / "clip_text_config.json",
                    tokenizer_dir=fixtures_dir / "tokenizer", pad_to=256)
    return out

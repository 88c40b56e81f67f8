"""Build the installable Blender extension zip and check it with Blender's own validator.

    python build.py                    # -> dist/animateanymesh-<version>.zip, validated
    python build.py --blender PATH     # validate with `PATH --command extension validate`
    python build.py --wheelhouse DIR [--platform TAG] [--python-version 3.11]
                                       # the backend's wheels for a machine with no internet

Layout of the zip (what Blender expects of an add-on extension: the manifest and __init__.py at
the top level):

    blender_manifest.toml
    __init__.py, controller.py, ...    the add-on (animateanymesh_addon/*)
    aam_seam/                          the seam (messages, error codes, stages, .npz layouts): the
                                       add-on loads it by path (animateanymesh_addon/seam.py), the
                                       backend imports it as `aam_seam`
    backend/                           the backend sources; the backend process runs
                                       `python -m backend.server` with the extension folder on
                                       its PYTHONPATH
    wheels/*.whl                       only wheels listed in the manifest's `wheels` (none today:
                                       Blender ships numpy; torch lives in the backend's own env)
    requirements.txt                   what "Set up backend" pip-installs into the backend's env

Exits non-zero on any problem: a version mismatch, a wheel listed but missing (or present but
not listed), a source file that does not compile, torch imported on the Blender side (the add-on,
the seam, backend/__init__.py), or an error from the validator.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
MANIFEST = REPO / "blender_manifest.toml"
ADDON_DIR = REPO / "animateanymesh_addon"
BACKEND_DIR = REPO / "backend"
SEAM_DIR = REPO / "aam_seam"
WHEELS_DIR = REPO / "wheels"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", "tests", ".venv", ".git"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip
_TORCH_IMPORT = re.compile(r"^\s*(import\s+torch|from\s+torch[\s.])", re.MULTILINE)


class BuildError(Exception):
    pass


def read_manifest() -> dict:
    try:
        with open(MANIFEST, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read {MANIFEST.name}: {exc}") from None


def backend_version() -> str:
    text = (BACKEND_DIR / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not m:
        raise BuildError("backend/__init__.py defines no __version__.")
    return m.group(1)


def _walk(root: Path):
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in SKIP_SUFFIXES:
            yield path, rel


def collect_files(manifest: dict) -> list[tuple[Path, str]]:
    """(source path, name in the zip) for everything the extension ships."""
    files = [(MANIFEST, "blender_manifest.toml")]
    # A development link animateanymesh_addon/backend -> ../backend would ship twice: the real
    # backend/ is added below.
    files += [(p, rel.as_posix()) for p, rel in _walk(ADDON_DIR) if rel.parts[0] != "backend"]
    if not any(name == "__init__.py" for _, name in files):
        raise BuildError("animateanymesh_addon/__init__.py is missing; Blender needs it at the top "
                         "of the zip.")
    files += [(p, "aam_seam/" + rel.as_posix()) for p, rel in _walk(SEAM_DIR)]
    files += [(p, "backend/" + rel.as_posix()) for p, rel in _walk(BACKEND_DIR)]

    listed = list(manifest.get("wheels", []))
    present = {p.name for p in WHEELS_DIR.glob("*.whl")} if WHEELS_DIR.is_dir() else set()
    listed_names = {Path(w).name for w in listed}
    for wheel in listed:
        if not wheel.startswith("./wheels/") or Path(wheel).name not in present:
            raise BuildError(f"manifest lists wheel {wheel!r} but wheels/{Path(wheel).name} is not "
                             "there. Fix: download it into wheels/ or drop it from the manifest.")
    if present - listed_names:
        raise BuildError(f"wheels/ holds {sorted(present - listed_names)} that the manifest does not "
                         "list. Fix: add them to `wheels` in blender_manifest.toml or delete them.")
    files += [(WHEELS_DIR / name, f"wheels/{name}") for name in sorted(listed_names)]
    if not (REPO / "requirements.txt").is_file():
        raise BuildError("requirements.txt is missing; the add-on's Set up backend installs it.")
    for extra in ("LICENSE", "LICENSE.txt", "README.md", "requirements.txt"):
        if (REPO / extra).is_file():
            files.append((REPO / extra, extra))
    names = [name for _, name in files]
    if len(names) != len(set(names)):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise BuildError(f"two sources map to the same zip entry: {dup}.")
    return files


def check_sources(files: list[tuple[Path, str]]) -> None:
    """Every .py compiles; nothing Blender imports pulls torch in."""
    for path, name in files:
        if path.suffix != ".py":
            continue
        source = path.read_text(encoding="utf-8")
        try:
            compile(source, str(path), "exec")
        except SyntaxError as exc:
            raise BuildError(f"{path.relative_to(REPO)} does not compile: {exc}") from None
        blender_side = not name.startswith("backend/") or name == "backend/__init__.py"
        if blender_side and _TORCH_IMPORT.search(source):
            raise BuildError(f"{path.relative_to(REPO)} imports torch, but it runs inside Blender "
                             "(add-on modules, aam_seam and backend/__init__.py must stay "
                             "torch-free).")


def write_zip(files: list[tuple[Path, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path, name in sorted(files, key=lambda item: item[1]):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)


# ------------------------------------------------------------------------------ validation

def find_validator() -> tuple[Path, Path | None]:
    """Blender's extension CLI (blender_ext.py) and its tag list, from the bpy wheel."""
    roots = []
    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    roots += sorted(REPO.glob(".venv/lib/python3*/site-packages/bpy"))
    roots += sorted(REPO.glob(".venv/Lib/site-packages/bpy"))
    for root in roots:
        for cli in sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"), reverse=True):
            tags = cli.parents[3] / "modules" / "_bpy_internal" / "extensions" / "tags.py"
            return cli, tags if tags.is_file() else None
    raise BuildError("Blender's extension validator was not found: install the bpy wheel "
                     "(pip install -r requirements-dev.txt) or pass --blender /path/to/blender.")


def validate(zip_path: Path, blender: str | None) -> str:
    if blender:
        cmd = [blender, "--factory-startup", "--command", "extension", "validate", str(zip_path)]
    else:
        cli, tags = find_validator()
        # blender_ext.py needs only the standard library (tomllib: Python 3.11+).
        cmd = [sys.executable, str(cli), "validate", str(zip_path)]
        if tags is not None:
            cmd += ["--valid-tags", str(tags)]  # what `blender --command extension` applies
    proc = subprocess.run(cmd, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    # It exits 1 on errors; its messages start with FATAL_ERROR / ERROR either way.
    if proc.returncode != 0 or re.search(r"^\s*(FATAL_)?ERROR\b", output, re.MULTILINE):
        raise BuildError(f"Blender's validator rejected {zip_path.name}:\n{output}")
    return output


def build(out_dir: Path, blender: str | None = None) -> Path:
    if sys.version_info < (3, 11):
        raise BuildError("build.py needs Python 3.11+ (Blender's validator uses tomllib).")
    manifest = read_manifest()
    version = manifest.get("version", "")
    if version != backend_version():
        raise BuildError(f"blender_manifest.toml says version {version} but backend/__init__.py says "
                         f"{backend_version()}; the add-on checks the backend's version, so bump both.")
    files = collect_files(manifest)
    check_sources(files)
    out = out_dir / f"{manifest['id']}-{version}.zip"
    write_zip(files, out)
    report = validate(out, blender)
    size = out.stat().st_size
    print(f"wrote {out} ({len(files)} files, {size / 1024:.1f} KiB)")
    print(report)
    return out


def wheelhouse_command(folder: Path, platform: str = "", python_version: str = "") -> list[str]:
    """pip's command that downloads every wheel the backend's requirements need into `folder`;
    Set up Backend installs from that folder with no network (Preferences > Wheelhouse). With a
    platform tag (win_amd64, macosx_11_0_arm64, manylinux_2_28_x86_64) and a Python version,
    one online machine prepares the wheels for another kind of machine."""
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--only-binary=:all:", "-r", str(REPO / "requirements.txt"), "-d", str(folder)]
    if platform:
        command += ["--platform", platform, "--implementation", "cp"]
    if python_version:
        command += ["--python-version", python_version]
    return command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist", help="where the zip goes")
    parser.add_argument("--blender", help="a Blender executable to validate with instead of the "
                                          "validator inside the bpy wheel")
    parser.add_argument("--wheelhouse", type=Path, default=None,
                        help="instead of the zip: download the backend's wheels into this folder")
    parser.add_argument("--platform", default="", help="with --wheelhouse: the target's pip "
                        "platform tag (default: this machine's)")
    parser.add_argument("--python-version", default="", help="with --wheelhouse: the target "
                        "Python, e.g. 3.11 (default: this one)")
    args = parser.parse_args(argv)
    if args.wheelhouse is not None:
        args.wheelhouse.mkdir(parents=True, exist_ok=True)
        return subprocess.call(wheelhouse_command(args.wheelhouse, args.platform, args.python_version))
    try:
        build(args.out_dir, args.blender)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

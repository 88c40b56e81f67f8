"""Build the installable Blender extension zips, one per platform, and check each with Blender's
own validator.

    python build.py                    # -> dist/animateanymesh-<version>-<platform>.zip for each
                                       #    platform in the manifest, each validated
    python build.py --only-platform linux-x64    # just that platform's zip
    python build.py --blender PATH     # validate with `PATH --command extension validate`
    python build.py --wheelhouse DIR [--platform TAG] [--python-version 3.11]
                                       # the backend's wheels for a machine with no internet

One zip per platform, as `blender --command extension build --split-platforms` makes them: named
`<id>-<version>-<platform with _ for ->.zip` (animateanymesh-0.1.0-linux_x64.zip), holding only
that platform's wheels, its manifest ending in the `[build.generated]` table through which
Blender narrows `platforms` and `wheels` to that platform. Blender's installer refuses a zip
made for another platform. Layout of each zip (what Blender expects of an add-on extension: the
manifest and __init__.py at the top level):

    blender_manifest.toml              the source manifest + [build.generated] for the platform
    __init__.py, controller.py, ...    the add-on (animateanymesh_addon/*)
    aam_seam/                          the seam (messages, error codes, stages, .npz layouts): the
                                       add-on loads it by path (animateanymesh_addon/seam.py), the
                                       backend imports it as `aam_seam`
    backend/                           the backend sources; the backend process runs
                                       `python -m backend.server` with the extension folder on
                                       its PYTHONPATH
    wheels/*.whl                       the wheels listed in the manifest's `wheels` that fit the
                                       zip's platform (py-dem-bones for Bake to Armature; Blender
                                       extracts them into its extensions' site-packages itself,
                                       no pip, no network). Blender ships numpy; torch lives in
                                       the backend's own env
    requirements.txt                   what "Set up backend" pip-installs into the backend's env

Exits non-zero on any problem: a version mismatch, a wheel listed but missing (or present but
not listed), a listed platform without a wheel of a platform-specific package (or a wheel for no
listed platform), a source file that does not compile, torch imported on the Blender side (the
add-on, the seam, backend/__init__.py), or an error from the validator.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform as _platform
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


# ------------------------------------------------------------------------------ platforms
# Blender's platform names (the manifest's `platforms`) and how a wheel's platform tag maps onto
# them, as Blender's own `extension build --split-platforms` and installer read the tags.

# (musllinux wheels map to nothing: Blender's Python is built on glibc, and its installer
# extracts only manylinux and linux_<machine> wheels there.)
_SYSTEMS = {"manylinux": "linux", "linux": "linux", "win": "windows", "macosx": "macos"}
_MACHINES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
# pip's --platform tag that fetches a wheel for each Blender platform (the fix in a refusal)
PIP_PLATFORM = {"linux-x64": "manylinux2014_x86_64", "linux-arm64": "manylinux2014_aarch64",
                "windows-x64": "win_amd64", "windows-arm64": "win_arm64",
                "macos-x64": "macosx_10_9_x86_64", "macos-arm64": "macosx_11_0_arm64"}


def this_platform() -> str:
    """This machine's Blender platform (linux-x64, windows-x64, macos-arm64, macos-x64, ...),
    worked out as Blender's installer does before it accepts a zip."""
    system, machine = _platform.system().lower(), _platform.machine().lower()
    return f"{ {'darwin': 'macos'}.get(system, system)}-{_MACHINES.get(machine, machine)}"


def wheel_platforms(filename: str) -> frozenset[str] | None:
    """The Blender platforms a wheel installs on, from its file name; None for every platform
    (a pure `...-none-any` wheel). A compressed tag set (`manylinux_2_17_x86_64.manylinux2014_
    x86_64`) is the union of its tags; a tag Blender has no platform for maps to nothing."""
    parts = Path(filename).name[:-len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise BuildError(f"{Path(filename).name} is not a wheel file name "
                         "(name-version-python-abi-platform.whl).")
    out: set[str] = set()
    for tag in parts[-1].split("."):
        if tag == "any":
            return None
        head, _, tail = tag.partition("_")
        system = _SYSTEMS.get(head.rstrip("0123456789"))  # manylinux2014 -> manylinux, win32 -> win
        if system is None:
            continue
        if system == "macos" and tail.endswith("universal2"):
            out |= {"macos-x64", "macos-arm64"}
            continue
        machine = next((m for m in _MACHINES if tail == m or tail.endswith("_" + m)), None)
        if machine is not None:
            out.add(f"{system}-{_MACHINES[machine]}")
    return frozenset(out)


def wheels_for_platform(wheels: list[str], platform: str) -> list[str]:
    """The wheels (manifest paths or names) that install on `platform`, in their order."""
    return [w for w in wheels if (p := wheel_platforms(w)) is None or platform in p]


def check_platform_wheels(platforms: list[str], wheels: list[str]) -> None:
    """Every listed platform gets a wheel of every platform-specific package; every wheel serves
    a listed platform."""
    if wheels and not platforms:
        specific = [Path(w).name for w in wheels if wheel_platforms(w) is not None]
        if specific:
            raise BuildError(f"the manifest lists platform-specific wheels {specific} but no "
                             "`platforms`. Fix: list the platforms they are for in "
                             "blender_manifest.toml.")
    for wheel in wheels:
        serves = wheel_platforms(wheel)
        if serves is not None and not serves & set(platforms):
            where = ", ".join(sorted(serves)) or "no Blender platform"
            raise BuildError(f"wheels/{Path(wheel).name} is for {where}, which `platforms` "
                             f"({', '.join(platforms)}) does not list. Fix: add its platform to "
                             "`platforms` or drop the wheel.")
    packages: dict[tuple[str, str], list[str]] = {}
    for wheel in wheels:
        name, version = Path(wheel).name.split("-")[:2]
        packages.setdefault((name, version), []).append(wheel)
    for (name, version), files in sorted(packages.items()):
        if all(wheel_platforms(w) is None for w in files):
            continue
        for platform in platforms:
            if not wheels_for_platform(files, platform):
                raise BuildError(
                    f"no {name} {version} wheel for {platform}, which `platforms` lists. Fix: "
                    f"`pip download {name}=={version} --only-binary=:all: --no-deps --platform "
                    f"{PIP_PLATFORM.get(platform, '<tag>')} --python-version 3.11 -d wheels`, "
                    f"list it in `wheels`, or drop {platform} from `platforms` in "
                    "blender_manifest.toml.")


def platform_manifest(text: str, platform: str, wheels: list[str]) -> str:
    """The manifest for one platform's zip: the source manifest and, as Blender's `extension
    build --split-platforms` writes it, a [build.generated] table that narrows `platforms` and
    `wheels` to that platform (Blender's installer and validator read these in their place)."""
    def quoted(items):
        return ", ".join(json.dumps(item) for item in items)
    return (text + "\n\n# BEGIN GENERATED CONTENT.\n"
            "# This must not be included in source manifests.\n"
            f"[build.generated]\nplatforms = [{quoted([platform])}]\n"
            f"wheels = [{quoted(wheels_for_platform(wheels, platform))}]\n"
            "# END GENERATED CONTENT.\n")


def zip_name(manifest: dict, platform: str = "") -> str:
    """`<id>-<version>-<platform, - as _>.zip`, Blender's name for a split-platform zip;
    `<id>-<version>.zip` for a manifest that lists no platforms (one zip for all)."""
    suffix = "-" + platform.replace("-", "_") if platform else ""
    return f"{manifest['id']}-{manifest['version']}{suffix}.zip"


def built_zip(out_dir: Path, platform: str | None = None) -> Path:
    """The zip build() wrote into `out_dir` for `platform` (default: this machine's)."""
    manifest = read_manifest()
    platforms = manifest.get("platforms") or []
    platform = platform or this_platform()
    if platforms and platform not in platforms:
        raise BuildError(f"{platform} is not among the manifest's platforms "
                         f"({', '.join(platforms)}); no zip is built for it.")
    path = Path(out_dir) / zip_name(manifest, platform if platforms else "")
    if not path.is_file():
        raise BuildError(f"{path} is not there: run build.py --out-dir {out_dir} first.")
    return path


# ------------------------------------------------------------------------------ sources

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
    for extra in ("LICENSE", "LICENSE.txt", "README.md", "requirements.txt", "requirements-ray.txt"):
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


def platform_files(files: list[tuple[Path, str]], platform: str) -> list[tuple[Path, str]]:
    """`files` without the wheels that do not install on `platform`."""
    return [(path, name) for path, name in files
            if not (name.startswith("wheels/") and name.endswith(".whl"))
            or not platform or wheels_for_platform([name], platform)]


def write_zip(files: list[tuple[Path, str]], out: Path,
              replace: dict[str, bytes] | None = None) -> None:
    """Write `files` into the zip `out`; `replace` gives some entries other contents (the
    platform's manifest)."""
    replace = replace or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path, name in sorted(files, key=lambda item: item[1]):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            # wheels are zips already: deflating them again gains nothing (Blender stores them too)
            info.compress_type = (zipfile.ZIP_STORED if name.endswith(".whl")
                                  else zipfile.ZIP_DEFLATED)
            info.external_attr = 0o644 << 16
            zf.writestr(info, replace[name] if name in replace else path.read_bytes())
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


def build(out_dir: Path, blender: str | None = None,
          platforms: list[str] | None = None) -> list[Path]:
    """Write and validate one zip per platform in the manifest (only `platforms` when given);
    return their paths."""
    if sys.version_info < (3, 11):
        raise BuildError("build.py needs Python 3.11+ (Blender's validator uses tomllib).")
    manifest = read_manifest()
    version = manifest.get("version", "")
    if version != backend_version():
        raise BuildError(f"blender_manifest.toml says version {version} but backend/__init__.py says "
                         f"{backend_version()}; the add-on checks the backend's version, so bump both.")
    if "generated" in manifest.get("build", {}):
        raise BuildError("blender_manifest.toml has a [build.generated] table; build.py writes it "
                         "into each platform's zip. Fix: delete it from the source manifest.")
    listed = list(manifest.get("platforms") or [])
    check_platform_wheels(listed, list(manifest.get("wheels", [])))
    targets = list(platforms) if platforms else listed or [""]
    for platform in targets:
        if listed and platform not in listed:
            raise BuildError(f"{platform} is not among the manifest's platforms "
                             f"({', '.join(listed)}). Fix: pick one of those, or add it to "
                             "`platforms`.")
    files = collect_files(manifest)
    check_sources(files)
    text = MANIFEST.read_text(encoding="utf-8")
    outs = []
    for platform in targets:
        chosen = platform_files(files, platform)
        replace = ({"blender_manifest.toml": platform_manifest(
            text, platform, list(manifest.get("wheels", []))).encode("utf-8")} if platform else {})
        out = out_dir / zip_name(manifest, platform)
        write_zip(chosen, out, replace)
        report = validate(out, blender)
        wheels = [name[len("wheels/"):] for _, name in chosen if name.startswith("wheels/")]
        print(f"wrote {out} ({len(chosen)} files, {out.stat().st_size / 1024:.1f} KiB; "
              f"wheels: {', '.join(wheels) or 'none'})")
        print(report)
        outs.append(out)
    return outs


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
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist", help="where the zips go")
    parser.add_argument("--blender", help="a Blender executable to validate with instead of the "
                                          "validator inside the bpy wheel")
    parser.add_argument("--wheelhouse", type=Path, default=None,
                        help="instead of the zip: download the backend's wheels into this folder")
    parser.add_argument("--only-platform", action="append", default=None, metavar="PLATFORM",
                        help="build only this platform's zip (linux-x64, windows-x64, macos-arm64, "
                        "macos-x64; repeat for several; default: every platform in the manifest)")
    parser.add_argument("--platform", default="", help="with --wheelhouse: the target's pip "
                        "platform tag (default: this machine's)")
    parser.add_argument("--python-version", default="", help="with --wheelhouse: the target "
                        "Python, e.g. 3.11 (default: this one)")
    args = parser.parse_args(argv)
    if args.wheelhouse is not None:
        args.wheelhouse.mkdir(parents=True, exist_ok=True)
        return subprocess.call(wheelhouse_command(args.wheelhouse, args.platform, args.python_version))
    try:
        build(args.out_dir, args.blender, args.only_platform)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

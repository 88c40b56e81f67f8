"""build.py's split by platform: which Blender platforms a wheel serves, the refusals when the
manifest's platforms and wheels do not fit, and each platform's manifest. No zip is written."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from blender_util import REPO, load_build

build = load_build()
PLATFORMS = ["linux-x64", "windows-x64", "macos-arm64", "macos-x64"]
PDB = "py_dem_bones-0.13.1-cp311-cp311-"
SHIPPED = {"linux-x64": PDB + "manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
           "windows-x64": PDB + "win_amd64.whl", "macos-arm64": PDB + "macosx_11_0_arm64.whl",
           "macos-x64": PDB + "macosx_10_9_x86_64.whl"}
TAGS = {
    "manylinux_2_17_x86_64.manylinux2014_x86_64": {"linux-x64"},
    "manylinux_2_28_x86_64": {"linux-x64"}, "manylinux1_x86_64": {"linux-x64"},
    "linux_x86_64": {"linux-x64"}, "manylinux2014_aarch64": {"linux-arm64"},
    "win_amd64": {"windows-x64"}, "win_arm64": {"windows-arm64"},
    "macosx_11_0_arm64": {"macos-arm64"}, "macosx_10_9_x86_64": {"macos-x64"},
    "macosx_10_9_universal2": {"macos-x64", "macos-arm64"},
    "win32": set(), "manylinux2014_i686": set(),
    "musllinux_1_1_x86_64": set(),  # Blender's installer extracts no musl wheel on (glibc) Linux
}


def blender_ext():
    """Blender's own extension CLI from the bpy wheel (standard library only), or skip."""
    try:
        cli, _tags = build.find_validator()
    except build.BuildError as exc:
        pytest.skip(str(exc))
    spec = importlib.util.spec_from_file_location("blender_ext", cli)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_wheels_platform_tag_names_the_blender_platforms_it_installs_on():
    for tag, expected in TAGS.items():
        assert build.wheel_platforms(f"pkg-1.0-cp311-cp311-{tag}.whl") == expected, tag
    assert build.wheel_platforms("pkg-1.0-py3-none-any.whl") is None  # every platform
    assert build.wheel_platforms("./wheels/pkg-1.0-1-cp311-abi3-win_amd64.whl") == {"windows-x64"}
    with pytest.raises(build.BuildError, match="not a wheel file name"):
        build.wheel_platforms("pkg-1.0.tar.gz")


def test_the_mapping_agrees_with_blenders_own():
    ext = blender_ext()
    for tag, expected in TAGS.items():
        if expected:
            assert set(ext.blender_platforms_from_wheel_platform(tag)) == expected, tag
    assert build.this_platform() == ext.platform_from_this_system()


@pytest.mark.parametrize("system,machine,expected", [
    ("Linux", "x86_64", "linux-x64"), ("Linux", "aarch64", "linux-arm64"),
    ("Windows", "AMD64", "windows-x64"), ("Windows", "ARM64", "windows-arm64"),
    ("Darwin", "arm64", "macos-arm64"), ("Darwin", "x86_64", "macos-x64")])
def test_this_platform(monkeypatch, system, machine, expected):
    monkeypatch.setattr(build._platform, "system", lambda: system)
    monkeypatch.setattr(build._platform, "machine", lambda: machine)
    assert build.this_platform() == expected


def test_the_shipped_manifest_gives_each_platform_its_one_solver_wheel():
    manifest = build.read_manifest()
    wheels = manifest["wheels"]
    assert manifest["platforms"] == PLATFORMS
    assert sorted(p.name for p in (REPO / "wheels").glob("*.whl")) == sorted(SHIPPED.values())
    build.check_platform_wheels(manifest["platforms"], wheels)
    for platform, wheel in SHIPPED.items():
        assert build.wheels_for_platform(wheels, platform) == [f"./wheels/{wheel}"]
        assert build.zip_name(manifest, platform) == (
            f"animateanymesh-0.1.0-{platform.replace('-', '_')}.zip")
    # no cp311 wheel of py-dem-bones exists for these: the extension does not list them
    for platform in ("linux-arm64", "windows-arm64"):
        assert build.wheels_for_platform(wheels, platform) == []


def test_a_listed_platform_without_its_wheel_is_refused_with_the_fix():
    wheels = [f"./wheels/{w}" for p, w in SHIPPED.items() if p != "windows-x64"]
    with pytest.raises(build.BuildError) as info:
        build.check_platform_wheels(PLATFORMS, wheels)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no py_dem_bones 0.13.1 wheel for windows-x64, which `platforms` lists")
    assert "--platform win_amd64 --python-version 3.11" in message
    assert "drop windows-x64 from `platforms`" in message
    # the same for a platform the solver has no wheel for at all
    with pytest.raises(build.BuildError, match="no py_dem_bones 0.13.1 wheel for linux-arm64"):
        build.check_platform_wheels(PLATFORMS + ["linux-arm64"], list(SHIPPED.values()))


def test_a_wheel_for_no_listed_platform_is_refused_and_a_pure_wheel_serves_all():
    arm = PDB + "manylinux2014_aarch64.whl"
    with pytest.raises(build.BuildError, match=r"wheels/.*aarch64\.whl is for linux-arm64, which "
                                               r"`platforms` \(linux-x64.*\) does not list"):
        build.check_platform_wheels(PLATFORMS, list(SHIPPED.values()) + [arm])
    with pytest.raises(build.BuildError, match="but no `platforms`"):
        build.check_platform_wheels([], [SHIPPED["linux-x64"]])
    pure = "./wheels/tinydep-1.0-py3-none-any.whl"
    build.check_platform_wheels(PLATFORMS, list(SHIPPED.values()) + [pure])
    build.check_platform_wheels([], [pure])
    assert build.wheels_for_platform([pure, SHIPPED["macos-x64"]], "macos-arm64") == [pure]


def test_each_platforms_manifest_narrows_platforms_and_wheels_as_blender_reads_them():
    text = build.MANIFEST.read_text(encoding="utf-8")
    source = tomllib.loads(text)
    ext = blender_ext()
    for platform, wheel in SHIPPED.items():
        generated = build.platform_manifest(text, platform, source["wheels"])
        assert generated.startswith(text)  # the source manifest, then Blender's generated table
        manifest = tomllib.loads(generated)
        assert manifest["build"]["generated"] == {"platforms": [platform],
                                                  "wheels": [f"./wheels/{wheel}"]}
        ext.pkg_manifest_dict_apply_build_generated_table(manifest)
        assert manifest["platforms"] == [platform] and manifest["wheels"] == [f"./wheels/{wheel}"]
        assert {k: v for k, v in manifest.items() if k not in ("platforms", "wheels", "build")} == {
            k: v for k, v in source.items() if k not in ("platforms", "wheels")}


def test_only_its_platforms_wheel_goes_into_a_zip():
    files = [(Path("x"), "__init__.py"), (Path("m"), "blender_manifest.toml")]
    files += [(Path(w), f"wheels/{w}") for w in SHIPPED.values()]
    files += [(Path("p"), "wheels/tinydep-1.0-py3-none-any.whl")]
    kept = [name for _, name in build.platform_files(files, "macos-arm64")]
    assert kept == ["__init__.py", "blender_manifest.toml", f"wheels/{SHIPPED['macos-arm64']}",
                    "wheels/tinydep-1.0-py3-none-any.whl"]


def test_a_platform_not_in_the_manifest_or_a_hand_written_generated_table_is_refused(
        tmp_path, monkeypatch):
    with pytest.raises(build.BuildError, match="linux-arm64 is not among the manifest's platforms"):
        build.build(tmp_path, platforms=["linux-arm64"])
    with pytest.raises(build.BuildError, match="linux-arm64 is not among"):
        build.built_zip(tmp_path, "linux-arm64")
    with pytest.raises(build.BuildError, match="run build.py --out-dir"):
        build.built_zip(tmp_path, "linux-x64")
    manifest = tmp_path / "blender_manifest.toml"
    manifest.write_text(build.MANIFEST.read_text(encoding="utf-8")
                        + '\n[build.generated]\nplatforms = ["linux-x64"]\n')
    monkeypatch.setattr(build, "MANIFEST", manifest)
    with pytest.raises(build.BuildError, match=r"\[build.generated\].*delete it"):
        build.build(tmp_path)
    assert list(tmp_path.glob("*.zip")) == []

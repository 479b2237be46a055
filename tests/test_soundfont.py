"""SoundFont discovery: configured file first, then the Debian fonts, then a pip package's font."""

import sys
from pathlib import Path

import pytest

from musicbox.errors import SoundFontError
from musicbox.runtime import soundfont


def _font(path):
    """A file with a SoundFont's RIFF 'sfbk' header (enough for discovery, not for the synth)."""
    path.write_bytes(b"RIFF" + (100).to_bytes(4, "little") + b"sfbk" + b"\0" * 100)
    return path


@pytest.fixture
def no_fonts(monkeypatch, tmp_path):
    """Search list pointing at nothing that exists."""
    monkeypatch.setattr(soundfont, "DEBIAN_SOUNDFONTS", ((tmp_path / "none.sf3", "some-debian-package"),))
    monkeypatch.setattr(soundfont, "PACKAGE_SOUNDFONTS", (("musicbox_no_such_package", "x.sf2"),))


def test_configured_file_wins(tmp_path, monkeypatch):
    configured = _font(tmp_path / "mine.sf2")
    monkeypatch.setattr(soundfont, "DEBIAN_SOUNDFONTS", ((_font(tmp_path / "deb.sf3"), "pkg"),))
    assert soundfont.find_soundfont(configured) == configured.resolve()
    assert soundfont.find_soundfont(str(configured)) == configured.resolve()


def test_configured_missing_is_a_clear_error(tmp_path):
    with pytest.raises(SoundFontError, match="does not exist.*musicbox.toml"):
        soundfont.find_soundfont(tmp_path / "gone.sf2")


def test_configured_non_soundfont_is_rejected(tmp_path):
    bad = tmp_path / "notes.sf2"
    bad.write_text("hello")
    with pytest.raises(SoundFontError, match="not a SoundFont"):
        soundfont.find_soundfont(bad)


def test_search_order_debian_then_package(tmp_path, monkeypatch):
    first, second = tmp_path / "a.sf3", tmp_path / "b.sf2"
    monkeypatch.setattr(soundfont, "DEBIAN_SOUNDFONTS", ((first, "pkg-a"), (second, "pkg-b")))
    pkg = tmp_path / "site" / "musicbox_fake_fonts"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('discovery must not import the package')\n")
    packaged = _font(pkg / "Tiny.sf2")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(soundfont, "PACKAGE_SOUNDFONTS", (("musicbox_fake_fonts", "Tiny.sf2"),))

    assert soundfont.find_soundfont() == packaged.resolve()
    assert "musicbox_fake_fonts" not in sys.modules
    _font(second)
    assert soundfont.find_soundfont("") == second.resolve()
    _font(first)
    assert soundfont.find_soundfont(None) == first.resolve()


def test_broken_candidate_is_skipped(tmp_path, monkeypatch):
    broken, good = tmp_path / "broken.sf3", _font(tmp_path / "good.sf2")
    broken.write_bytes(b"\0" * 64)
    monkeypatch.setattr(soundfont, "DEBIAN_SOUNDFONTS", ((broken, "pkg-a"), (good, "pkg-b")))
    assert soundfont.find_soundfont() == good.resolve()


def test_nothing_found_names_what_to_install(no_fonts):
    with pytest.raises(SoundFontError) as err:
        soundfont.find_soundfont()
    message = str(err.value)
    assert "sudo apt install some-debian-package" in message
    assert "pip install musicbox_no_such_package" in message
    assert "musicbox.toml" in message


def test_real_search_list_names_the_packages():
    packages = [package for _, package in soundfont.DEBIAN_SOUNDFONTS]
    assert packages == [
        "fluid-soundfont-gm",
        "musescore-general-soundfont",
        "musescore-general-soundfont-small",
        "timgm6mb-soundfont",
    ]
    assert soundfont.PACKAGE_SOUNDFONTS == (("pretty_midi", "TimGM6mb.sf2"),)


def test_the_debian_package_depends_on_the_fonts_in_the_search_order():
    """The package's Depends names the first font, the others as alternatives, in the same order."""
    control = (Path(__file__).resolve().parents[1] / "packaging" / "debian" / "control").read_text()
    depends = next(line for line in control.splitlines() if line.startswith("Depends:"))
    packages = [package for _, package in soundfont.DEBIAN_SOUNDFONTS]
    assert " | ".join(packages) + "," in depends


def test_every_shipped_style_s_programs_are_in_each_installed_font():
    """Each style's General MIDI programs (and the drum kit where it has drums) exist in every candidate
    font installed here, so no style falls back to a piano."""
    fluidsynth = pytest.importorskip("fluidsynth")
    from musicbox.config import shipped_bundle
    from musicbox.runtime.manifest import load_manifest

    styles = load_manifest(shipped_bundle()).controls.styles
    fonts = [path for path in soundfont.search_paths() if path.is_file()]
    if not fonts:
        pytest.skip("no SoundFont installed here")
    for font in fonts:
        synth = fluidsynth.Synth()
        try:
            sfid = synth.sfload(str(font))
            assert sfid >= 0, font
            for style in styles:
                for program in style.arrangement.programs:
                    assert synth.sfpreset_name(sfid, 0, program), (font.name, style.name, program)
                if style.arrangement.drums != "none":
                    assert synth.sfpreset_name(sfid, 128, 0), (font.name, style.name, "drum kit")
        finally:
            synth.delete()


def test_finds_a_soundfont_on_this_machine():
    if not any(path.is_file() for path in soundfont.search_paths()):
        pytest.skip("no SoundFont installed here")
    assert soundfont.find_soundfont().suffix in (".sf2", ".sf3")

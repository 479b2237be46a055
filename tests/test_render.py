"""Arrangement and rendering with a real FluidSynth and a real SoundFont."""

from dataclasses import replace

import numpy as np
import pytest

from musicbox.config import SynthConfig, default_config
from musicbox.errors import SoundFontError
from musicbox.runtime.arrangement import DRUM_CHANNEL, DRUM_PATTERNS, Arranger, bar_notes, swing_warp
from musicbox.runtime.controls import Controls
from musicbox.runtime.manifest import Arrangement, AttrsInfo, ControlsInfo, MoodInfo, StyleInfo, TempoInfo
from musicbox.runtime.meter import COMMON, METERS
from musicbox.runtime.pianoroll import DEFAULT, Note, notes_to_roll
from musicbox.runtime.soundfont import find_soundfont, search_paths

pytest.importorskip("fluidsynth")
if not any(p.is_file() for p in search_paths()):
    pytest.skip("no SoundFont installed", allow_module_level=True)

from musicbox.runtime.render import Renderer, measure_synth_rtf  # noqa: E402

SR = 44100
C_MAJOR = (60, 64, 67)


def _style(name, programs=(0, 0, 0), drums="none", swing=0.0, velocity=90):
    arrangement = Arrangement(programs, drums, swing, velocity)
    return StyleInfo(name, name, (1.0, 2.0, 3.0), (60.0, 64.0, 68.0), 2.0, arrangement)


CONTROLS = ControlsInfo(
    AttrsInfo(("density",), (0.0,), (1.0,)),
    TempoInfo(60.0, 160.0, 100.0),
    MoodInfo(0.1),
    (_style("piano"), _style("band", (0, 0, 32), "rock"), _style("swung", swing=1.0, velocity=60)),
)
DRY = SynthConfig(soundfont=None, gain=0.5, reverb=0.0)


@pytest.fixture(scope="module")
def renderer():
    """One dry, unhumanized renderer (reset before each use) keeps the module to a few seconds."""
    with Renderer(CONTROLS, DRY, humanize=False) as r:
        yield r


@pytest.fixture
def fresh(renderer):
    renderer.reset()
    return renderer


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _spectral_peaks(pcm, lo=100.0, hi=1000.0, n=6):
    """Frequencies (Hz) of the ``n`` strongest spectral peaks between ``lo`` and ``hi``, 10 Hz apart."""
    x = pcm.mean(axis=1)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(freqs < lo) | (freqs > hi)] = 0
    peaks = []
    for i in np.argsort(spec)[::-1]:
        if all(abs(freqs[i] - p) > 10 for p in peaks):
            peaks.append(float(freqs[i]))
        if len(peaks) == n:
            return peaks
    return peaks


def _hz(midi):
    return 440.0 * 2 ** ((midi - 69) / 12)


def test_c_major_bar_has_the_right_length_and_pitches(fresh):
    pcm = fresh.render_bar([Note(1, 0, p, 16) for p in C_MAJOR], Controls(0, 120, 0))
    assert pcm.dtype == np.float32 and pcm.shape == (2 * SR, 2)  # 120 BPM: a 4/4 bar is 2 s
    assert np.isfinite(pcm).all() and _rms(pcm) > 1e-3 and np.abs(pcm).max() < 1.0
    peaks = _spectral_peaks(pcm)
    harmonics = [k * _hz(p) for p in C_MAJOR for k in (1, 2, 3)]
    assert all(min(abs(f / h - 1) for h in harmonics) < 0.015 for f in peaks), peaks
    for p in C_MAJOR:
        assert min(abs(f / _hz(p) - 1) for f in peaks) < 0.015, (p, peaks)


def test_bar_lengths_add_up_without_drift(fresh):
    controls = Controls(0, 97, 0)  # 2.474... s: not a whole number of frames
    frames = [len(fresh.render_bar([], controls)) for _ in range(7)]
    exact = controls.bar_seconds() * SR
    assert max(frames) - min(frames) <= 1
    assert sum(frames) == round(7 * exact)


def test_note_held_over_the_bar_line_sounds_then_stops(fresh):
    controls = Controls(0, 120, 0)  # a step is 0.125 s
    fresh.render_bar([Note(0, 8, 60, 16)], controls)  # runs 8 steps into the next bar
    nxt = fresh.render_bar([], controls)
    assert _rms(nxt[: SR // 2]) > 1e-3  # still sounding in the next bar's first half
    assert _rms(nxt[-SR // 4 :]) < _rms(nxt[: SR // 2]) / 30  # released at step 8, gone by the end


def test_tie_continues_instead_of_restriking(fresh):
    controls = Controls(0, 120, 0)
    fresh.render_bar([Note(0, 0, 60, 16)], controls)
    tied = fresh.render_bar([Note(0, 0, 60, 8)], controls, ties={(0, 60)})
    fresh.reset()
    fresh.render_bar([Note(0, 0, 60, 16)], controls)
    struck = fresh.render_bar([Note(0, 0, 60, 8)], controls)
    head = slice(0, SR // 10)  # a piano decays: a new attack is much louder than the held note
    assert _rms(struck[head]) > 2 * _rms(tied[head]) > 0
    assert _rms(tied[-SR // 4 :]) < _rms(tied[: SR // 4]) / 30  # the tie ends at its own note-off


def test_tie_without_a_sounding_note_is_struck(fresh):
    pcm = fresh.render_bar([Note(0, 0, 60, 8)], Controls(0, 120, 0), ties={(0, 60)})
    assert _rms(pcm[: SR // 2]) > 1e-3


def test_render_roll_joins_ties_over_bar_lines(fresh):
    roll = notes_to_roll([Note(0, 8, 60, 16), Note(2, 0, 40, 4)], n_bars=2)
    notes, ties = bar_notes(roll[1])
    assert ties == {(0, 60)} and Note(0, 0, 60, 8) in notes
    pcm = fresh.render_roll(roll, Controls(0, 120, 0), COMMON)
    assert pcm.shape == (4 * SR, 2)
    assert _rms(pcm[2 * SR : 2 * SR + SR // 2]) > 1e-3


def test_drums_only_where_the_style_calls_for_them(fresh):
    for style, want_drums in ((0, False), (1, True), (2, False)):
        fresh.reset()
        plan = fresh.arranger.arrange([], Controls(style, 120, 0))
        assert any(n.channel == DRUM_CHANNEL for n in plan.notes) == want_drums
        pcm = fresh.render_bar([], Controls(style, 120, 0))
        assert (_rms(pcm) > 1e-3) == want_drums, style


def test_drums_get_busier_with_energy():
    arranger = Arranger.from_manifest(CONTROLS, humanize=False)
    calm = arranger.arrange([], Controls(1, 60, -1)).notes
    lively = arranger.arrange([], Controls(1, 160, 1)).notes
    assert len(lively) > len(calm) > 0
    assert max(n.velocity for n in lively) > max(n.velocity for n in calm)


def test_swing_delays_offbeat_sixteenths():
    assert swing_warp(1, 1.0) == pytest.approx(4 / 3)  # full triplet swing
    assert swing_warp(2, 1.0) == 2 and swing_warp(4, 0.5) == 4  # 8ths stay put
    arranger = Arranger.from_manifest(CONTROLS, humanize=False)
    (straight,) = arranger.arrange([Note(0, 5, 60, 1)], Controls(0, 120, 0)).notes
    (swung,) = arranger.arrange([Note(0, 5, 60, 1)], Controls(2, 120, 0)).notes
    assert straight.on == 5 and swung.on == pytest.approx(5 + 1 / 3)


def test_swing_shifts_onsets_in_the_audio(fresh):
    def onset(style):
        fresh.reset()
        pcm = np.abs(fresh.render_bar([Note(0, 1, 72, 1)], Controls(style, 120, 0))).max(axis=1)
        return int(np.argmax(pcm > 0.1 * pcm.max()))

    step = SR * 0.125
    straight, swung = onset(0), onset(2)
    assert abs(straight - step) < 200
    assert abs((swung - straight) - step / 3) < 200  # 64-frame control blocks, attack shape


def test_style_blend_uses_the_nearer_styles_instruments():
    arranger = Arranger.from_manifest(CONTROLS)
    near0, near1 = arranger.style_arrangement(0.4), arranger.style_arrangement(0.6)
    assert near0.drums == "none" and near1.drums == "rock" and near1.programs == (0, 0, 32)
    mid = arranger.style_arrangement(1.5)
    assert mid.swing == pytest.approx(0.5) and mid.velocity == pytest.approx(75)
    assert arranger.style_arrangement(9).swing == 1.0  # clipped to the last detent


def test_mood_sets_dynamics():
    arranger = Arranger.from_manifest(CONTROLS, humanize=False)
    notes = [Note(0, 0, 72, 4)]
    dark = arranger.arrange(notes, Controls(0, 100, -1)).notes[0].velocity
    bright = arranger.arrange(notes, Controls(0, 100, 1)).notes[0].velocity
    assert bright > dark


def test_humanization_is_deterministic_for_a_seed():
    notes = [Note(0, s, 72, 2) for s in range(0, 16, 2)]
    a, b, c = (Arranger.from_manifest(CONTROLS, seed=s) for s in (1, 1, 2))
    bars_a = [a.arrange(notes, Controls(1, 120, 0)) for _ in range(3)]
    assert bars_a == [b.arrange(notes, Controls(1, 120, 0)) for _ in range(3)]
    assert bars_a[0] != c.arrange(notes, Controls(1, 120, 0))
    a.reset()
    assert a.arrange(notes, Controls(1, 120, 0)) == bars_a[0]


def test_reset_replays_identically(fresh):
    bars = [[Note(0, 0, 72, 20), Note(2, 4, 40, 4)], [Note(1, 2, 64, 3)]]
    first = [fresh.render_bar(b, Controls(1, 110, 0.5)) for b in bars]
    fresh.reset()
    again = [fresh.render_bar(b, Controls(1, 110, 0.5)) for b in bars]
    for x, y in zip(first, again, strict=True):
        assert x.shape == y.shape
        # FluidSynth recycles voice objects: a note's first 64-frame block may differ a little
        assert _rms(x - y) < 0.01 * _rms(x)


def test_release_ends_carried_notes(fresh):
    controls = Controls(0, 120, 0)
    fresh.render_bar([Note(0, 8, 60, 40)], controls)
    fresh.release()
    pcm = fresh.render_bar([], controls)
    assert _rms(pcm[-SR // 2 :]) < 1e-4


def test_reverb_renderer_and_rtf_measurement():
    with Renderer(CONTROLS, default_config().synth) as r:
        bars = [
            [Note(1, 0, p, 16) for p in C_MAJOR] + [Note(0, s, 72 + s % 5, 2) for s in range(0, 16, 2)]
        ] * 2
        result = measure_synth_rtf(r, bars, Controls(1, 120, 0))
    assert result["bars"] == 2 and result["audio_seconds"] == pytest.approx(4.0)
    assert 0 < result["rtf_p50"] <= result["rtf_p95"] and result["cpu_rtf_p50"] > 0
    assert result["target"] == 0.02


def test_soundfont_that_fails_to_load(tmp_path):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF" + (100).to_bytes(4, "little") + b"sfbk" + b"\xff" * 100)
    assert find_soundfont(fake) == fake.resolve()  # looks like one ...
    with pytest.raises(SoundFontError, match="could not load"):
        Renderer(
            CONTROLS, SynthConfig(soundfont=fake, gain=0.5, reverb=0.0)
        )  # ... but the synth cannot load it


def test_every_drum_family_has_a_pattern_for_every_meter_one_cell_a_step():
    for family, patterns in DRUM_PATTERNS.items():
        assert set(patterns) == set(METERS), family
        for name, pattern in patterns.items():
            assert all(len(cells) == METERS[name].steps for _, cells in pattern), (family, name)


@pytest.mark.parametrize("family", [f for f in DRUM_PATTERNS if f != "none"])
def test_bass_drum_hits_fall_on_the_meters_beats_and_the_downbeat_is_loudest(family):
    """Every family, lively: the bass drum (36) plays the downbeat and, in 3/4 and 6/8, only beats of the
    meter (a waltz's 1; a jig's two dotted beats, at most); no hit is louder than the downbeat's."""
    arranger = Arranger([Arrangement((0, 0, 0), family, 0.0, 90)], (60.0, 160.0), humanize=False)
    for name in ("3/4", "6/8"):
        meter = METERS[name]
        hits = arranger.arrange([], Controls(0, 160, 1), meter).notes
        kicks = [n.on for n in hits if n.key == 36]
        assert kicks[0] == 0 and set(kicks) <= set(meter.beats), (name, kicks)
        assert all(n.on < meter.steps for n in hits)
        downbeat = max(n.velocity for n in hits if n.on == 0)
        assert all(n.velocity <= downbeat for n in hits)


def test_a_waltz_and_a_jig_lay_their_drums_on_their_own_beats():
    arranger = Arranger([Arrangement((0, 0, 0), "folk", 0.0, 90)], (60.0, 160.0), humanize=False)

    def hits(name, key):
        return [n.on for n in arranger.arrange([], Controls(0, 60, -1), METERS[name]).notes if n.key == key]

    assert hits("3/4", 36) == [0] and hits("3/4", 54) == [4, 8]  # oom-pah-pah: the tambourine on 2 and 3
    assert hits("6/8", 36) == [0, 6] and hits("6/8", 54) == [0, 6]  # calm: the two dotted beats alone
    assert hits("4/4", 36) == [0, 8]  # as before


def test_accents_follow_the_meters_beats():
    arranger = Arranger.from_manifest(CONTROLS, humanize=False)

    def velocity(step, name):
        return arranger.arrange([Note(0, step, 72, 1)], Controls(0, 100, 0), METERS[name]).notes[0].velocity

    assert velocity(0, "6/8") > velocity(6, "6/8") > velocity(4, "6/8")  # 6/8: its second dotted beat
    assert velocity(4, "3/4") > velocity(6, "3/4")  # 3/4: its second quarter
    assert [velocity(s, "4/4") for s in (0, 4, 6, 5)] == [velocity(s, "3/4") for s in (0, 4, 6, 5)]


def test_swing_in_six_eight_is_a_jigs_lilt():
    """Within each three-eighth group the first eighth is longer and the second shorter; the beats and
    the third eighth stay; 4/4 and 3/4 keep their sixteenth swing."""
    jig = METERS["6/8"]
    assert [swing_warp(s, 0.6, jig) for s in (0, 2, 4, 6, 8, 10, 12)] == pytest.approx(
        [0, 2.4, 4, 6, 8.4, 10, 12]
    )
    assert swing_warp(1, 0.6, jig) == pytest.approx(1.2) and swing_warp(3, 0.6, jig) == pytest.approx(3.2)
    assert swing_warp(2, 0.6) == 2 and swing_warp(5, 0.6) == pytest.approx(5.2)  # 4/4: the 16ths swing
    assert swing_warp(5, 1.0, jig) == 5 and swing_warp(5, 1.0, METERS["3/4"]) == pytest.approx(5 + 1 / 3)
    arranger = Arranger.from_manifest(CONTROLS, humanize=False)
    (lilt,) = arranger.arrange([Note(0, 2, 60, 2)], Controls(2, 120, 0), jig).notes
    assert lilt.on == pytest.approx(2 + 2 / 3) and lilt.off == pytest.approx(4)


@pytest.mark.parametrize("name", ["3/4", "6/8"])
def test_a_twelve_step_bar_lasts_three_quarter_notes(fresh, name):
    roll = notes_to_roll([Note(0, 0, 60, 12), Note(2, 6, 40, 6)], 2, replace(DEFAULT, steps_per_bar=12))
    pcm = fresh.render_roll(roll, Controls(1, 120, 0), METERS[name])
    assert pcm.shape == (2 * 3 * SR // 2, 2)  # two bars of 1.5 s at 120 BPM
    assert _rms(pcm[-SR // 2 :]) > 1e-3  # the bass at step 6 of the second bar sounds to its end
    with pytest.raises(ValueError, match="a 4/4 bar has 16 steps; this roll has 12"):
        fresh.render_roll(roll, Controls(1, 120, 0), COMMON)


def test_a_bar_written_ahead_stops_rendering_when_it_is_no_longer_wanted_and_releases_its_notes():
    from musicbox.runtime.render import Interrupted

    notes = [Note(0, s, p, 4) for s in (0, 4, 8, 12) for p in C_MAJOR]
    asked = []

    def keep_going() -> bool:
        asked.append(1)
        return len(asked) < 3  # a knob turns after the bar's second event

    with Renderer(CONTROLS, DRY, humanize=False, level=None) as r:
        with pytest.raises(Interrupted):
            r.render_bar(notes, Controls(tempo_bpm=120.0), keep_going=keep_going)
        assert r._ringing == {}  # everything it struck was released
        after = r.render_bar([Note(0, 0, 72, 16)], Controls(tempo_bpm=120.0))
    assert len(asked) == 3 and after.shape == (44100 * 2, 2) and np.abs(after).max() > 0.01

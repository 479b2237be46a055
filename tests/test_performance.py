"""The performance layer (runtime/performance.py): phrasing from the form, in the audio and in the notes
that MIDI carries; expression 0 plays exactly as written."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pyloudnorm
import pytest

from musicbox.config import SynthConfig, default_config, load_config, shipped_bundle
from musicbox.errors import ConfigError
from musicbox.runtime.arrangement import DRUM_CHANNEL, Played
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.controls import Controls
from musicbox.runtime.form import FormSpec, plan
from musicbox.runtime.generator import Generator
from musicbox.runtime.loudness import DEFAULT_LEVEL
from musicbox.runtime.performance import (
    DEFAULT_RULES,
    STYLE_RULES,
    Phrasing,
    Rules,
    arch,
    perform,
    rules_for,
    stretch,
)
from musicbox.runtime.soundfont import search_paths
from musicbox.runtime.state import GeneratorState

pytest.importorskip("fluidsynth")
if not any(p.is_file() for p in search_paths()):
    pytest.skip("no SoundFont installed", allow_module_level=True)

from musicbox.runtime.render import Renderer  # noqa: E402

RATE = 44100
CHORALE = Controls(style=0.0, tempo_bpm=80.0, mood=0.0)


@pytest.fixture(scope="module")
def bundle():
    b = Bundle.open(shipped_bundle(), precision="int8_dynamic")
    yield b
    b.close()


@pytest.fixture(scope="module")
def chorale(bundle):
    """64 bars of the shipped chorale, seed 3: its first tunes in bar form AABC of 4-bar sections, 2-bar
    phrases (so a tune ends every 16 bars)."""
    gen = Generator(bundle, seed=3)
    return [gen.next_bar(CHORALE) for _ in range(64)]


def _render(bundle, bars, expression, phrased=True):
    """(pcm of every bar, the played notes of every bar) rendered at ``expression``."""
    synth = replace(default_config().synth, expression=expression)
    with Renderer(bundle.manifest.controls, synth, RATE) as renderer:
        pcm, played = [], []
        for bar in bars:
            phrase = bar.phrase if phrased else None
            pcm.append(renderer.render_roll(bar.roll, bar.controls, bar.meter, phrase=phrase))
            played.append(renderer.last_plan)
    return pcm, played


# ---- where a bar is ---------------------------------------------------------------------------------


def test_the_phrasing_of_each_bar_follows_the_form_planner():
    spec = FormSpec(sections="AAB", section_bars=4, phrase_bars=2)
    state = GeneratorState.fresh(0, 0, 2, (4, 8))
    seen = []
    for _ in range(14):
        state, _place = plan(state, CHORALE, spec)
        state = state.advanced(np.zeros((4, 8), np.float32))
        seen.append(Phrasing.after(state, spec))
    ends = [p.ends for p in seen]
    assert [p.bar for p in seen] == [0, 1] * 7
    assert (
        ends[:12]
        == ["phrase"] * 2 + ["section"] * 2 + ["phrase"] * 2 + ["section"] * 2 + ["phrase"] * 2 + ["tune"] * 2
    )
    assert ends[12:] == ["phrase"] * 2  # the next tune
    assert [p.cadence for p in seen[:4]] == [False, True, False, True]


def test_the_generator_s_bars_carry_their_phrasing(chorale):
    assert all(bar.phrase is not None and bar.phrase.bars == 2 for bar in chorale)
    assert [bar.phrase.bar for bar in chorale[:6]] == [0, 1, 0, 1, 0, 1]
    assert [bar.phrase.ends for bar in chorale[12:16]] == ["phrase", "phrase", "tune", "tune"]


# ---- the rules --------------------------------------------------------------------------------------


def test_the_ritardando_grows_into_section_and_tune_ends_and_a_chorale_holds_its_fermata():
    rules = Rules(phrase_rit=0.05, section_rit=0.1, tune_rit=0.3, rit_bars=2, fermata=0.0)
    at = {
        ends: [stretch(Phrasing(b, 4, ends), rules, 1.0) for b in range(4)]
        for ends in ("phrase", "section", "tune")
    }
    assert at["phrase"] == [1.0, 1.0, 1.0, pytest.approx(1.05)]
    assert at["section"] == [1.0, 1.0, pytest.approx(1.025), pytest.approx(1.1)]
    assert at["tune"] == [1.0, 1.0, pytest.approx(1.075), pytest.approx(1.3)]
    assert stretch(Phrasing(3, 4), rules, 0.5) == pytest.approx(1.025)  # expression scales it
    assert stretch(Phrasing(3, 4), rules._replace(fermata=0.4), 1.0) == pytest.approx(1.45)
    assert rules_for("chorale").fermata > 0 and rules_for("celtic").fermata == 0
    assert rules_for("no such style") == DEFAULT_RULES
    assert set(STYLE_RULES) == {
        s.name for s in Bundle.open(shipped_bundle(), "fp32").manifest.controls.styles
    }


def test_the_arch_rises_to_its_peak_and_falls_to_the_phrase_end():
    xs = np.linspace(0, 1, 101)
    a = np.array([arch(x, 0.6) for x in xs])
    assert a[0] == pytest.approx(0.0) and a[-1] == pytest.approx(0.0, abs=1e-12)
    assert xs[int(np.argmax(a))] == pytest.approx(0.6, abs=0.01) and a.max() == pytest.approx(1.0)
    assert np.all(np.diff(a[:60]) > 0) and np.all(np.diff(a[61:]) < 0)


def test_perform_shapes_dynamics_length_and_the_cadence_s_breath():
    melody = [Played(float(s), float(s) + 1.0, 0, 72, 80, False) for s in range(0, 12, 4)]
    long_note = Played(12.0, 16.0, 0, 60, 80, False)  # reaches the bar line: the breath cuts it
    chord = Played(0.0, 16.0, 1, 48, 70, False)
    drum = Played(0.0, 1.0, DRUM_CHANNEL, 36, 80, False)
    notes = [*melody, long_note, chord, drum]
    rules = Rules(arch=0.2, arch_peak=0.6, breath=0.5, contrast=0.1, high_loud=0.08)
    inside, _ = perform(notes, Phrasing(0, 2), rules, 1.0, 16)
    cadence, s = perform(notes, Phrasing(1, 2), rules, 1.0, 16)
    assert s == pytest.approx(1.05)
    assert [n.off for n in inside if n.channel == 1] == [16.0]  # no breath inside a phrase
    assert [n.off for n in cadence if n.channel in (0, 1) and n.on >= 12 or n.channel == 1] == [15.5, 15.5]
    assert next(n.off for n in cadence if n.channel == DRUM_CHANNEL) == 1.0  # drums keep their length
    first, later = inside[0], [n for n in inside if n.channel == 0][2]
    assert first.velocity < later.velocity  # the arch rises from the phrase's start
    assert next(n for n in inside if n.channel == 0).off < 1.0  # a 16th is played shorter
    high, low = Played(4.0, 5.0, 0, 84, 80, False), Played(8.0, 9.0, 0, 60, 80, False)
    out, _ = perform([high, low], Phrasing(0, 1), rules._replace(arch=0.0), 1.0, 16)
    assert out[0].velocity > 80 > out[1].velocity  # high-loud
    untouched, one = perform(notes, Phrasing(1, 2), rules, 0.0, 16)
    assert untouched is notes and one == 1.0


# ---- the done-means: a 64-bar chorale ---------------------------------------------------------------


def test_a_64_bar_chorale_slows_into_its_phrase_ends_and_its_melody_follows_the_arch(bundle, chorale):
    pcm, plans = _render(bundle, chorale, 1.0)
    seconds = np.array([len(p) / RATE for p in pcm])
    ends = np.array([bar.phrase.cadence for bar in chorale])
    inside = seconds[~ends].mean()
    ratio = seconds[ends].mean() / inside
    # tempo at a phrase's end is inside / end of the tempo inside: 1 / 1.44 with the chorale's rules
    assert ratio > 1.3, ratio
    written = CHORALE.bar_seconds(16)
    fermata = [s / written for s, bar in zip(seconds, chorale, strict=True) if bar.phrase.cadence]
    assert min(fermata) > 1.4  # every phrase end held: phrase_rit + fermata at the least
    tune_ends = [
        s for s, bar in zip(seconds, chorale, strict=True) if bar.phrase.ends == "tune" and bar.phrase.cadence
    ]
    assert tune_ends and min(tune_ends) > max(
        seconds[ends & np.array([b.phrase.ends == "phrase" for b in chorale])]
    )
    total = sum(len(p) for p in pcm)
    exact = sum(written * p.stretch for p in plans) * RATE
    assert abs(total - exact) < 1.0  # bars never drift, stretched or not
    position, velocity = [], []
    for bar, played in zip(chorale, plans, strict=True):
        for n in played.notes:
            if n.channel == 0 and not n.tied:
                position.append(
                    arch((bar.phrase.bar + n.on / 16) / bar.phrase.bars, rules_for("chorale").arch_peak)
                )
                velocity.append(n.velocity)
    correlation = float(np.corrcoef(position, velocity)[0, 1])
    assert correlation > 0.6, correlation  # measured 0.80 (seed 3, 236 melody onsets)
    loudness = pyloudnorm.Meter(RATE).integrated_loudness(np.concatenate(pcm))
    assert abs(loudness - DEFAULT_LEVEL.target_lufs) <= 1.5


def test_expression_zero_renders_today_s_audio_bit_for_bit(bundle, chorale):
    bars = chorale[:12]
    as_written, written_plans = _render(bundle, bars, 1.0, phrased=False)  # what the box played before
    at_zero, zero_plans = _render(bundle, bars, 0.0)
    for a, b in zip(as_written, at_zero, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.notes for p in written_plans] == [p.notes for p in zero_plans]
    assert all(p.stretch == 1.0 for p in zero_plans)


def test_the_played_notes_carry_more_velocity_spread_than_accents_alone(bundle, chorale):
    """What MIDI out and the MIDI files take (the renderer's ``last_plan``) has the performance in it."""
    _, flat = _render(bundle, chorale[:16], 0.0)
    _, shaped = _render(bundle, chorale[:16], 1.0)

    def spread(plans):
        return float(np.std([n.velocity for p in plans for n in p.notes if n.channel == 0]))

    assert spread(shaped) > spread(flat) + 2.0
    slower = [bar.phrase.cadence or bar.phrase.ends != "phrase" for bar in chorale[:16]]
    assert [p.stretch > 1.0 for p in shaped] == slower  # a section's ritardando begins a bar earlier


def test_a_knob_turn_inside_a_stretched_bar_keeps_its_beat_lines_even(bundle, chorale):
    """A tempo turn at a beat line: the rest of the bar is rendered at the new tempo times the bar's
    stretch, and its frames are the bar's from that beat line on (what the player assumes)."""
    cadence = next(bar for bar in chorale if bar.phrase.cadence)
    synth = default_config().synth
    with Renderer(bundle.manifest.controls, synth, RATE) as renderer:
        whole = renderer.render_roll(cadence.roll, cadence.controls, cadence.meter, phrase=cadence.phrase)
        s = renderer.last_plan.stretch
        assert len(whole) == round(CHORALE.bar_seconds(16) * s * RATE)
        faster = replace(CHORALE, tempo_bpm=120.0)
        rest = renderer.render_roll(cadence.roll, faster, cadence.meter, from_step=8, phrase=cadence.phrase)
        bar_frames = faster.bar_seconds(16) * s * RATE
        assert abs(len(rest) - (bar_frames - round(8 * bar_frames / 16))) <= 1


def test_every_shipped_style_performed_stays_at_the_target_loudness(bundle):
    meter = pyloudnorm.Meter(RATE)
    for style in range(len(bundle.manifest.controls.styles)):
        gen = Generator(bundle, seed=1)
        controls = Controls(float(style), 100.0, 0.0)
        bars = [gen.next_bar(controls) for _ in range(12)]
        pcm = np.concatenate(_render(bundle, bars, 1.0)[0])
        assert abs(meter.integrated_loudness(pcm) - DEFAULT_LEVEL.target_lufs) <= 1.5, style


# ---- the configuration ------------------------------------------------------------------------------


def test_expression_is_in_the_synth_config_and_checked(tmp_path):
    default = {f.name: f.default for f in dataclasses.fields(SynthConfig)}["expression"]
    assert default_config().synth.expression == default == 1.0
    path = tmp_path / "box.toml"
    path.write_text("[synth]\nexpression = 0.25\n")
    assert load_config(path).synth.expression == 0.25
    path.write_text("[synth]\nexpression = 2\n")
    with pytest.raises(ConfigError, match=r"synth\.expression"):
        load_config(path)


def test_a_performed_bar_never_outgrows_the_box_s_ring_slot(bundle, chorale):
    """The worker sets ``longest_s`` to its ring slot: a fermata gives way rather than overflow it."""
    cadence = next(bar for bar in chorale if bar.phrase.cadence)
    with Renderer(bundle.manifest.controls, default_config().synth, RATE) as renderer:
        renderer.longest_s = CHORALE.bar_seconds(16) * 1.1
        pcm = renderer.render_roll(cadence.roll, cadence.controls, cadence.meter, phrase=cadence.phrase)
        assert renderer.last_plan.stretch == pytest.approx(1.1)
        assert len(pcm) == round(CHORALE.bar_seconds(16) * 1.1 * RATE)

"""runtime/generator.py: determinism, continuation context, state hand-over and knob changes."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest

from musicbox.errors import ConfigError, MusicBoxError
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.controls import Controls
from musicbox.runtime.generator import Generator, seed_key
from musicbox.runtime.manifest import SamplerInfo
from musicbox.runtime.pianoroll import roll_to_notes, roll_to_planes, transpose
from tests.helpers.synthetic_bundle import build_bundle

C = Controls(style=0.0, tempo_bpm=100.0, mood=0.0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    return Bundle.open(build_bundle(tmp_path_factory.mktemp("gen")), precision="fp32")


def rolls(gen: Generator, n: int, controls: Controls = C) -> list[np.ndarray]:
    return [gen.next_bar(controls).roll for _ in range(n)]


def test_a_bar(bundle):
    bar = Generator(bundle, seed=3).next_bar(C)
    assert bar.index == 0 and bar.controls == C and bar.gen_seconds > 0
    assert bar.roll.shape == (1, 3, 16, 64) and bar.roll.dtype == np.uint8
    assert 0 < len(bar.notes) == len(roll_to_notes(bar.roll))
    assert all(0 <= n.start < 16 for n in bar.notes)


def test_deterministic_for_a_seed(bundle):
    a, b = rolls(Generator(bundle, seed=7), 4), rolls(Generator(bundle, seed=7), 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = rolls(Generator(bundle, seed=8), 4)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_context_is_the_reencoded_played_bars(bundle):
    gen = Generator(bundle, seed=1)
    assert gen.get_state().context_mask.tolist() == [0, 0]
    first = gen.next_bar(C)
    state = gen.get_state()
    assert state.index == 1 and state.context_mask.tolist() == [0, 1]
    np.testing.assert_array_equal(state.context[1], bundle.encode(roll_to_planes(first.roll))[0])
    second = gen.next_bar(C)
    state = gen.get_state()
    assert state.context_mask.tolist() == [1, 1]
    np.testing.assert_array_equal(state.context[0], bundle.encode(roll_to_planes(first.roll))[0])
    np.testing.assert_array_equal(state.context[1], bundle.encode(roll_to_planes(second.roll))[0])


def test_the_denoiser_sees_the_bars_at_its_context_lags_and_the_bar_s_place(tmp_path):
    """Context lags (4, 1): the generator keeps 4 bars and feeds the one 4 back and the one just before;
    ``place`` is the one-hot of the planner's position of the bar in its section."""
    bundle = Bundle.open(build_bundle(tmp_path, lags=(4, 1)), precision="fp32")
    gen = Generator(bundle, seed=2)
    seen = []
    run = bundle.run_denoiser
    bundle.run_denoiser = lambda feeds: seen.append({k: v.copy() for k, v in feeds.items()}) or run(feeds)
    played = []
    for _ in range(6):
        played.append(bundle.encode(roll_to_planes(gen.next_bar(C).roll))[0])
        assert gen.get_state().context.shape == (4, 4, 32)
    steps = len(seen) // 6
    first, fifth, sixth = seen[0], seen[4 * steps], seen[5 * steps]
    assert first["context_mask"][0].tolist() == [0, 0] and fifth["context_mask"][0].tolist() == [1, 1]
    np.testing.assert_array_equal(fifth["context"][0, :4], played[0])  # bar 4 sees bar 0 (4 back) ...
    np.testing.assert_array_equal(fifth["context"][0, 4:], played[3])  # ... and bar 3 (1 back)
    np.testing.assert_array_equal(sixth["context"][0, :4], played[1])
    assert [int(np.argmax(seen[i * steps]["place"][0])) for i in range(6)] == [0, 1, 2, 3, 4, 5]
    assert all(f["place"].sum(axis=1).tolist() == [1.0] * len(f["place"]) for f in seen)


def test_the_meter_is_the_style_s_or_the_control_s_and_a_change_starts_a_new_tune(tmp_path):
    """A jig (synthetic style 4: 6/8 first) plays 12-step bars of 6/8 unless asked otherwise; the denoiser
    reads the meter's one-hot; a change of meter is written without the old meter's bars."""
    bundle = Bundle.open(build_bundle(tmp_path, n_styles=5), precision="fp32")
    gen = Generator(bundle, seed=4)
    seen = []
    run = bundle.run_denoiser
    bundle.run_denoiser = lambda feeds: seen.append({k: v.copy() for k, v in feeds.items()}) or run(feeds)
    try:
        jig = Controls(style=4.0)
        bars = [gen.next_bar(jig) for _ in range(3)]
        assert [b.meter.name for b in bars] == ["6/8"] * 3 and bars[0].roll.shape == (1, 3, 12, 64)
        assert all(n.start < 12 for b in bars for n in b.notes)
        assert bars[0].seconds == pytest.approx(1.8)  # 3 quarter notes at 100 BPM
        assert seen[-1]["meter"][0].tolist() == [0.0, 0.0, 1.0]
        assert seen[-1]["context_mask"][0].tolist() == [1.0, 1.0]
        waltz = gen.next_bar(replace(jig, meter="3/4"))
        assert waltz.meter.name == "3/4" and waltz.roll.shape == (1, 3, 12, 64)
        assert seen[-1]["meter"][0].tolist() == [0.0, 1.0, 0.0]
        assert seen[-1]["context_mask"][0].tolist() == [0.0, 0.0]  # a new tune in a new meter
        assert gen.get_state().section_start == 3
        common = gen.next_bar(replace(jig, style=0.0))
        assert common.meter.name == "4/4" and common.roll.shape == (1, 3, 16, 64)
    finally:
        bundle.run_denoiser = run
    with pytest.raises(ConfigError, match="5/4"):
        gen.next_bar(replace(jig, meter="5/4"))


def test_a_shorter_bar_s_padding_is_silent_in_what_the_model_sees_next(bundle):
    """The re-encoded context of a 12-step bar is the encoding of that bar padded with silence."""
    gen = Generator(bundle, seed=9)
    bar = gen.next_bar(Controls(style=2.0, meter="3/4"))
    padded = np.zeros((1, 3, 16, 64), np.uint8)
    padded[:, :, :12] = bar.roll
    np.testing.assert_array_equal(gen.get_state().context[-1], bundle.encode(roll_to_planes(padded))[0])


def test_a_key_normalized_model_is_transposed_into_the_seed_key(tmp_path):
    normalized = Bundle.open(build_bundle(tmp_path, tonic=0), precision="fp32")
    in_c = Generator(normalized, seed=5, key=0)
    in_d = Generator(normalized, seed=5, key=2)
    for _ in range(3):
        c, d = in_c.next_bar(C), in_d.next_bar(C)
        np.testing.assert_array_equal(d.roll, transpose(c.roll, 2))
        assert d.notes == roll_to_notes(d.roll)
    np.testing.assert_array_equal(in_c.get_state().context, in_d.get_state().context)  # model's key
    assert Generator(normalized, seed=5).get_state().key == seed_key(5)
    assert {seed_key(s) for s in range(200)} == set(range(-5, 7))


def test_a_model_in_any_key_is_never_transposed(bundle):
    gen = Generator(bundle, seed=5, key=4)
    assert gen.get_state().key == 0
    np.testing.assert_array_equal(gen.next_bar(C).roll, Generator(bundle, seed=5).next_bar(C).roll)


def test_context_changes_the_music(bundle):
    gen = Generator(bundle, seed=1)
    rolls(gen, 2)
    state = gen.get_state()
    with_context = gen.next_bar(C).roll
    fresh = Generator(bundle, seed=1)
    fresh.set_state(
        replace(state, context=np.zeros_like(state.context), context_mask=np.zeros(2, np.float32))
    )
    assert not np.array_equal(fresh.next_bar(C).roll, with_context)


def test_state_moves_to_another_process_and_continues(bundle):
    straight = rolls(Generator(bundle, seed=5), 6)
    first = Generator(bundle, seed=5)
    rolls(first, 3)
    state = pickle.loads(pickle.dumps(first.get_state()))
    second = Generator(bundle, seed=99)
    second.set_state(state)
    assert second.index == 3
    assert all(np.array_equal(x, y) for x, y in zip(rolls(second, 3), straight[3:], strict=True))


def test_a_saved_state_regenerates_with_new_knobs(bundle):
    gen = Generator(bundle, seed=2)
    rolls(gen, 3)
    after_3 = gen.get_state()  # what the supervisor keeps for a knob turn
    old = rolls(gen, 3)
    gen.set_state(after_3)
    assert gen.index == 3
    assert np.array_equal(gen.next_bar(C).roll, old[0])  # same knobs: the same bar again
    gen.set_state(after_3)
    changed = gen.next_bar(Controls(style=2.0, tempo_bpm=150.0, mood=1.0))
    assert changed.index == 3 and not np.array_equal(changed.roll, old[0])
    assert gen.next_bar(C).index == 4


def test_each_knob_changes_the_bar(bundle):
    def bar(controls):
        return Generator(bundle, seed=4).next_bar(controls).roll

    base = bar(C)
    for changed in (Controls(1.0, 100, 0), Controls(0.5, 100, 0), Controls(0, 160, 0), Controls(0, 100, -1)):
        assert not np.array_equal(bar(changed), base), changed


def test_reseed_keeps_the_context(bundle):
    gen = Generator(bundle, seed=1)
    rolls(gen, 2)
    before = gen.get_state()
    gen.reseed(11)
    assert gen.get_state().seed == 11 and gen.get_state().context is before.context
    same = Generator(bundle, seed=1)
    rolls(same, 2)
    assert not np.array_equal(gen.next_bar(C).roll, same.next_bar(C).roll)


@pytest.fixture
def denoiser_calls(monkeypatch):
    """The feeds of every denoiser call from now on (copies), in order."""
    calls: list[dict] = []
    real = Bundle.run_denoiser

    def spy(self, feeds):
        calls.append({k: v.copy() for k, v in feeds.items()})
        return real(self, feeds)

    monkeypatch.setattr(Bundle, "run_denoiser", spy)
    return calls


def test_guidance_batches_cond_and_uncond(bundle, tmp_path, denoiser_calls):
    Generator(bundle).next_bar(C)
    steps = bundle.manifest.sampler.steps
    calls = [c["style_w"] for c in denoiser_calls]
    assert len(calls) == steps and all(c.shape == (2, 4) and c[1, -1] == 1 for c in calls)
    denoiser_calls.clear()
    unguided = build_bundle(tmp_path / "u", sampler=SamplerInfo("heun", 3, "flow", 3.0, 1.0, 0.5))
    Generator(Bundle.open(unguided)).next_bar(C)
    calls = [c["style_w"] for c in denoiser_calls]
    assert len(calls) == 2 * 3 - 1 and all(c.shape == (1, 4) for c in calls)  # heun: 2 calls but the last


def test_meter_guidance_adds_a_meter_unknown_row_and_steers_away_from_it(tmp_path, denoiser_calls):
    rolls = {}
    for g in (1.0, 4.0):
        denoiser_calls.clear()
        sampler = SamplerInfo("euler", 4, "flow", 1.0, 1.0, 0.5, {"4/4": g})
        gen = Generator(Bundle.open(build_bundle(tmp_path / str(g), sampler=sampler)))
        rolls[g] = gen.next_bar(C).roll
        rows = [[1, 0, 0]] if g == 1.0 else [[1, 0, 0], [0, 0, 0]]
        assert len(denoiser_calls) == 4 and all(c["meter"].tolist() == rows for c in denoiser_calls)
        denoiser_calls.clear()
        gen.next_bar(replace(C, meter="3/4"))  # a meter it does not guide: one row
        assert len(denoiser_calls) == 4 and all(c["meter"].tolist() == [[0, 1, 0]] for c in denoiser_calls)
    assert not np.array_equal(rolls[1.0], rolls[4.0])


def test_style_guidance_adds_the_contrast_styles_row_and_steers_away_from_it(tmp_path, denoiser_calls):
    rolls = {}
    for g in (1.0, 4.0):
        denoiser_calls.clear()
        sampler = SamplerInfo(
            "euler", 4, "flow", 1.0, 1.0, 0.5, style_guidance={"4/4": g}, style_contrast={"chorale": "folk"}
        )
        gen = Generator(Bundle.open(build_bundle(tmp_path / str(g), sampler=sampler)))
        rolls[g] = gen.next_bar(C).roll  # chorale
        rows = [[1, 0, 0, 0]] if g == 1.0 else [[1, 0, 0, 0], [0, 1, 0, 0]]
        assert len(denoiser_calls) == 4 and all(c["style_w"].tolist() == rows for c in denoiser_calls)
    assert not np.array_equal(rolls[1.0], rolls[4.0])


def test_set_state_rejects_another_bundles_state(bundle):
    gen = Generator(bundle)
    state = gen.get_state()
    bad = type(state).fresh(0, 0, history=3, latent=(4, 32))
    with pytest.raises(MusicBoxError, match="another bundle"):
        gen.set_state(bad)


def test_render_command_writes_a_wav_and_follows_the_script(tmp_path, capsys):
    import soundfile

    from musicbox.cli import main

    root = build_bundle(tmp_path / "b")
    script = tmp_path / "knobs.json"
    script.write_text('[{"at": 2.0, "style": "folk", "mood": 1}, {"at": 4.5, "tempo": 150}]')
    out = tmp_path / "a.wav"
    argv = ["render", "--seconds", "6", "--bundle", str(root), "--precision", "fp32"]
    assert main([*argv, "--script", str(script), "--out", str(out)]) == 0
    pcm, rate = soundfile.read(out)
    assert pcm.shape == (6 * rate, 2) and np.abs(pcm).max() > 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bar ")]
    assert "style 0.00 tempo 100 mood +0.00" in lines[0]
    assert "style 1.00 tempo 100 mood +1.00" in lines[1]  # at the first bar line after 2 s (2.4 s)
    assert "tempo 150" in lines[2]  # bar 2 starts at 4.8 s


def test_render_command_errors(tmp_path, capsys):
    from musicbox.cli import main

    bad = tmp_path / "knobs.json"
    bad.write_text('[{"at": 1, "volume": 3}]')
    root = build_bundle(tmp_path / "b")
    assert (
        main(["render", "--seconds", "1", "--bundle", str(root), "--script", str(bad), "--out", "x.wav"])
        == 78
    )
    assert "unknown key 'volume'; allowed: at, style, tempo, mood" in capsys.readouterr().err
    assert main(["render", "--seconds", "1", "--bundle", str(tmp_path / "none"), "--out", "x.wav"]) == 78
    assert "no bundle folder" in capsys.readouterr().err


def test_bench_parser_declares_the_soak_mode():
    from musicbox.cli import build_parser

    args = build_parser().parse_args(["bench", "soak", "--minutes", "2", "--kill-every", "30"])
    assert (args.mode, args.minutes, args.kill_every) == ("soak", 2.0, 30.0)
    assert build_parser().parse_args(["bench"]).mode == "all"


@pytest.mark.slow
def test_bench_measures_every_figure(tmp_path):
    from musicbox.cli import main
    from musicbox.targets import targets_of

    root = build_bundle(tmp_path / "b", variants=("fp32", "int8", "int8_dynamic"))
    out = tmp_path / "bench.json"
    assert main(["bench", "--bundle", str(root), "--bars", "3", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures["results"]) == {t.name for t in targets_of("bench")}
    assert figures["results"]["knob_to_change_bars"]["value"] == 1
    by_meter, best = figures["details"]["generation"], figures["details"]["int8_variant"]
    assert list(by_meter) == ["4/4", "3/4", "6/8"]  # every meter the model plays, the default's first
    gen = by_meter["4/4"]
    assert gen["int8"]["rtf_p95"] > 0 and gen["int8_dynamic"]["rtf_p95"] > 0
    assert gen[best]["bar_ms_p50"] == min(gen["int8"]["bar_ms_p50"], gen["int8_dynamic"]["bar_ms_p50"])
    assert figures["results"]["int8_speedup_per_bar"]["value"] == round(gen[f"{best}_speedup_p50"], 5)
    worst = max(g[best]["rtf_p95"] for g in by_meter.values())
    assert figures["results"]["generation_rtf_int8_p95"]["value"] == round(worst, 5)

"""model/panel.py: the eval's feature panel, on hand-made rolls whose answers are known."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from musicbox.model import form, panel
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.meter import COMMON, METERS
from musicbox.runtime.pianoroll import DEFAULT, ONSET, Note, notes_to_roll
from tests.helpers.tiny_model import random_dataset

MELODY, HARMONY, BASS = 0, 1, 2
C4 = 60
BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"


def _roll(notes: list[tuple[int, int, int, int]], bars: int) -> np.ndarray:
    """A roll of ``bars`` 16-step bars from (track, start step, MIDI pitch, steps) tuples."""
    return notes_to_roll([Note(t, s, p, d) for t, s, p, d in notes], bars)


def test_a_parallel_fifth_in_an_inner_pair_is_counted_and_not_in_the_outer_pair():
    roll = _roll(
        [
            (MELODY, 0, C4 + 12, 32),  # a held melody and bass: no move of theirs
            (BASS, 0, C4 - 24, 32),
            (HARMONY, 0, C4 + 7, 8),  # harmony top G4 -> A4 over bottom C4 -> D4: a parallel fifth
            (HARMONY, 0, C4, 8),
            (HARMONY, 8, C4 + 9, 8),
            (HARMONY, 8, C4 + 2, 8),
        ],
        2,
    )
    every = panel.parallels(roll, panel.ALL_PAIRS)
    assert every["fifths"] == 100.0 and every["octaves"] == 0.0  # the one pair that moves, in fifths
    assert np.isnan(panel.parallels(roll, panel.OUTER)["fifths"])  # melody and bass never move
    assert np.isnan(form.parallels_per_100(roll)["fifths"])


def test_parallel_octaves_between_melody_and_bass_are_counted_by_the_form_metric_too():
    roll = _roll(
        [(MELODY, 0, C4 + 12, 4), (MELODY, 4, C4 + 14, 4), (BASS, 0, C4 - 12, 4), (BASS, 4, C4 - 10, 4)], 1
    )
    assert form.parallels_per_100(roll) == {"fifths": 0.0, "octaves": 100.0}
    assert panel.parallels(roll, panel.ALL_PAIRS)["octaves"] == 100.0  # harmony silent: one pair moves


def test_contrary_motion_to_a_fifth_is_no_parallel():
    roll = _roll([(MELODY, 0, C4 + 7, 4), (MELODY, 4, C4 + 14, 4), (BASS, 0, C4, 4), (BASS, 4, C4 - 5, 4)], 1)
    assert panel.parallels(roll, panel.OUTER) == {"fifths": 0.0, "octaves": 0.0}


def test_a_melody_rest_of_a_beat_is_counted_and_one_of_three_sixteenths_is_not():
    beat_rest = _roll([(MELODY, 0, C4, 12)], 1)  # silent on steps 12-15
    short_rest = _roll([(MELODY, 0, C4, 13)], 1)  # silent on steps 13-15
    assert form.rest_bars_per_100(beat_rest) == 100.0
    assert form.rest_bars_per_100(short_rest) == 0.0


def test_notes_of_two_bars_or_more_are_counted_per_100_bars():
    roll = _roll([(MELODY, 0, C4, 32), (MELODY, 32, C4 + 2, 31), (MELODY, 63, C4, 1)], 4)
    assert panel.long_notes_per_100(roll) == 25.0  # one note of 32 steps in 4 bars; 31 steps is short
    assert form.long_note_share(roll) == 2 / 3


def test_a_suspension_held_into_the_downbeat_and_resolving_down_is_counted():
    roll = _roll(
        [
            (HARMONY, 8, C4 + 5, 12),  # F4 struck on beat 3, held over the bar line to step 20
            (HARMONY, 20, C4 + 4, 12),  # resolves down a semitone to E4 within the beat
            (MELODY, 16, C4 + 7, 16),  # G4 struck on the downbeat: a second above the held F
            (BASS, 0, C4 - 12, 32),
        ],
        2,
    )
    # strong-beat sonorities: bar 0 step 8 (C, F), bar 1 step 0 (C, F, G: the suspension), step 8 (C, E, G)
    assert panel.suspensions_per_100(roll) == 100.0 / 3
    struck = roll.copy()
    struck[1, HARMONY, 0, C4 + 5 - DEFAULT.pitch_low] = ONSET  # struck again: no suspension
    assert panel.suspensions_per_100(struck) == 0.0


def test_a_semitone_clash_on_a_weak_beat_is_counted_there_and_not_on_the_strong_beats():
    roll = _roll([(MELODY, 4, C4 + 1, 4), (BASS, 0, C4 - 12, 16), (HARMONY, 0, C4 + 4, 16)], 1)
    assert panel.clash_share(roll, (4, 12)) == 0.5  # step 4 clashes (C, C#, E), step 12 does not
    assert panel.clash_share(roll, COMMON.strong) == 0.0
    assert form.strong_beat_clashes(roll) == 0.0


def _c_major_bars(bass: list[int]) -> list[tuple[int, int, int, int]]:
    """One bar per bass pitch class (relative to C): the C major scale up the melody's first half bar,
    its tonic chord's notes held over a bass note."""
    notes = []
    for i, b in enumerate(bass):
        for k, step in enumerate((0, 2, 4, 5)):
            notes.append((HARMONY, i * 16 + 4 * k, C4 + step + 7 * (k % 2), 4))
        notes.append((BASS, i * 16, C4 - 24 + b, 16))
        notes.append((MELODY, i * 16, C4 + 12 + (0 if b in (0, 5) else 2), 16))
    return notes


def test_a_cadence_reached_from_the_dominant_is_authentic_and_from_the_subdominant_plagal():
    piece = _roll(_c_major_bars([0, 5, 7, 0, 0, 7, 0, 5, 0, 0]), 10)
    tonic, _, _ = form.windowed_key(piece, radius=2)
    assert (tonic == 0).all()
    arrivals = form.cadence_downbeats(piece, tonic)
    assert arrivals.tolist() == [True, False, False, True, True, False, True, False, True, True]
    kinds = panel.cadence_types(piece)
    # arrivals after bar 0: bars 3 (from G), 4 (from C), 6 (from G), 8 (from F), 9 (from C)
    assert kinds["authentic_share"] == 2 / 5 and kinds["plagal_share"] == 1 / 5


def test_a_piece_that_moves_to_a_far_key_and_stays_changes_key_once_in_its_windows():
    home = _c_major_bars([0] * 12)
    far = [(t, s + 12 * 16, p + 6, d) for t, s, p, d in home]
    piece = _roll(home + far, 24)
    assert panel.key_changes_per_100(_roll(home, 12)) == 0.0
    changes = panel.key_changes_per_100(piece)
    assert 0 < changes <= 100.0 * 3 / 24  # one move, seen by a window or two on the way
    assert form.key_stability(piece)["home_key"] < 0.7


def test_rhythm_classes_melodic_motion_and_track_onsets_count_the_melody():
    roll = _roll([(MELODY, 0, C4, 1), (MELODY, 1, C4, 2), (MELODY, 3, C4 + 2, 4), (MELODY, 7, C4 + 9, 8)], 1)
    assert panel.rhythm_classes(roll) == {
        "rhythm_sixteenths": 0.25,
        "rhythm_eighths": 0.25,
        "rhythm_quarters": 0.25,
        "rhythm_longer": 0.25,
    }
    assert panel.melodic_motion(roll) == {
        "melody_repeats": 1 / 3,
        "melody_steps": 1 / 3,
        "melody_leaps": 1 / 3,
    }
    onsets = panel.track_onsets(roll)
    assert onsets["onsets_melody"] == 4.0 and np.isnan(onsets["onsets_bass"])
    assert panel.sixteenth_onsets(roll) == 0.75  # onsets at steps 0, 1, 3, 7: three off the eighths


def test_density_variation_is_zero_for_alike_bars_and_grows_as_busy_and_held_bars_alternate():
    alike = _roll(_c_major_bars([0, 5, 7, 0] * 2), 8)
    assert panel.density_variation(alike) == 0.0
    roll = alike.copy()
    roll[1::2] = 0  # every other bar silent: left out, the rest alike
    assert panel.density_variation(roll) == 0.0
    roll = alike.copy()
    roll[1::2, 1:] = 0  # every other bar keeps only its melody: busy and thin bars alternate
    busy, thin = (alike[0] == ONSET).sum(), (alike[1, :1] == ONSET).sum()
    expected = np.std([busy, thin]) / np.mean([busy, thin])
    assert panel.density_variation(roll) == pytest.approx(expected) and expected > 0.3
    assert np.isnan(panel.density_variation(alike[:1]))


def test_the_accent_reads_the_downbeat_against_the_other_beats_of_the_meter():
    waltz = np.concatenate([_roll([(MELODY, 0, C4, 4), (BASS, 0, C4 - 12, 4), (MELODY, 4, C4, 4)], 1)] * 4)
    waltz[:, :, 12:] = 0
    figures = panel.accent(waltz, METERS["3/4"])
    assert figures["accent"] == 2.0 / 0.5  # 2 onsets on beat 1, 1 on beat 2 and none on beat 3
    assert figures["offbeat"] == 0.0
    jig = _roll([(MELODY, 0, C4, 2), (MELODY, 2, C4, 2), (MELODY, 6, C4, 2)], 1)
    assert panel.accent(jig, METERS["6/8"]) == {"accent": 1.0, "offbeat": 1 / 3}


def test_a_feature_within_the_band_or_its_tolerance_counts_as_within_and_the_rest_are_named():
    features = [panel.Feature("a", "a", 0.0), panel.Feature("b", "b", 0.5), panel.Feature("c", "c", 0.0)]
    features.append(panel.Feature("d", "d", 0.0))
    real = {"a": 1.0, "b": 0.1, "c": 1.0, "d": float("nan")}
    model = {"a": 1.4, "b": 0.4, "c": 2.0, "d": 1.0}
    out = panel.compare(real, model, features)
    assert out["outside"] == ["c"] and out["share_within"] == 2 / 3  # d has no real figure: left out
    assert out["features"]["b"]["ratio"] == 4.0 and out["features"]["b"]["within"]


def test_every_panel_feature_has_a_value_on_a_piece_with_all_three_tracks():
    notes = _c_major_bars([0, 5, 7, 0] * 5)
    figures = panel.piece_panel(_roll(notes, 20))
    names = [f.name for f in panel.FEATURES]
    assert len(names) >= 25 and set(names) <= set(figures)
    assert {"accent_4/4", "offbeat_4/4"} <= set(figures)
    assert figures["similarity_lag4"] == 1.0 and figures["home_key"] == 1.0


def test_the_panel_of_the_shipped_bundle_names_each_style_s_features_outside_the_band():
    bundle = Bundle.open(BUNDLE)
    data = random_dataset(n_pieces=40)
    data = replace(data, split=np.full_like(data.split, 2))  # every piece held out
    out = panel.panel_evaluation(bundle, data, 1, np.random.default_rng(0))
    assert list(out["per_style"]) == [s.name for s in bundle.manifest.controls.styles]
    for name, row in out["per_style"].items():
        assert len(row["features"]) >= 25, name
        outside = [k for k, f in row["features"].items() if not f["within"]]
        assert row["outside"] == outside
        assert row["share_within"] == pytest.approx(1 - len(outside) / len(row["features"]))
        assert row["pieces"]["model"] == 2 and row["pieces"]["real"] > 0
    quartet = out["per_style"]["quartet"]
    assert {"accent_3/4", "accent_6/8", "accent_4/4"} <= set(quartet["features"])  # every meter it plays
    for name, rows in out["voicing_pass"].items():  # the styles with inner voices
        assert list(rows) == list(panel.VOICE_LEADING)
        assert np.isfinite(rows["parallel_fifths_all"]["real"]), name
        assert all(list(v) == ["without_pass", "with_pass", "real"] for v in rows.values())
    lines = panel.panel_report_lines(out)
    assert lines[0] == "## Feature panel" and any(line.startswith("| quartet |") for line in lines)
    assert any("without the decoder's pass" in line for line in lines) == bool(out["voicing_pass"])


def test_the_report_shows_voice_leading_without_the_pass_with_it_and_real():
    row = {"share_within": 1.0, "outside": [], "features": {}}
    figures = dict.fromkeys(panel.VOICE_LEADING, {"without_pass": 2.5, "with_pass": 0.5, "real": 0.25})
    lines = panel.panel_report_lines(
        {"band": [0.67, 1.5], "per_style": {"chorale": row}, "voicing_pass": {"chorale": figures}}
    )
    assert "| parallel fifths per 100 moves, every voice pair | 2.5 / 0.5 / 0.25 |" in lines

"""model/corpus.py + model/data.py: corpus -> bars, labels, splits, cache; on a handful of real pieces.

Musical rules are checked on tiny ABC tunes (parsed by music21 in milliseconds); the end-to-end build on
the first pieces of three corpus collections (a few seconds, one process).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from music21 import converter

from musicbox.errors import DatasetError
from musicbox.model import corpus, data
from musicbox.runtime import midi
from musicbox.runtime.pianoroll import DEFAULT, HELD, OFF, ONSET

LOW = DEFAULT.pitch_low


def _pieces(abc_body: str, meter: str = "4/4", unit: str = "1/4") -> tuple[list[corpus.Piece], Counter]:
    counts: Counter = Counter()
    abc = f"X:1\nT:test\nM:{meter}\nL:{unit}\nK:C\n{abc_body}\n"
    return corpus.score_to_pieces(converter.parse(abc, format="abc"), "test#X1", counts), counts


def _onsets(roll_bar_track: np.ndarray) -> list[tuple[int, int]]:
    """(step, MIDI pitch) of the onsets of one bar of one track."""
    s, p = np.nonzero(roll_bar_track == ONSET)
    return sorted(zip(s.tolist(), (p + LOW).tolist(), strict=True))


# ---------------------------------------------------------------------------------------------------
# Musical rules


def test_tie_across_bar_line_is_held():
    (piece,), _ = _pieces("C D E F- | F G A B | c4 | c4 |")
    f = 65 - LOW
    assert piece.rolls[0, 0, 12, f] == ONSET
    assert (piece.rolls[1, 0, 0:4, f] == HELD).all()  # the tied half continues over the bar line
    assert piece.rolls[1, 0, 4, f] == OFF
    assert _onsets(piece.rolls[1, 0])[0] == (4, 67)


def test_two_four_measures_are_joined_in_pairs_and_an_odd_one_is_dropped():
    (piece,), counts = _pieces("CD | EF | GA | Bc | de | fg | a2 |", meter="2/4")
    assert len(piece.rolls) == 3 and piece.meters == ["2/4"] * 3
    assert _onsets(piece.rolls[0, 0]) == [(0, 60), (4, 62), (8, 64), (12, 65)]
    assert _onsets(piece.rolls[2, 0]) == [(0, 74), (4, 76), (8, 77), (12, 79)]
    assert counts["measures:2/4"] == 7 and counts["dropped:unpaired_2/4"] == 1


def test_a_three_four_bar_is_twelve_steps_and_a_tie_crosses_its_bar_line():
    (piece,), counts = _pieces("CDE | FGA- | A B c | edc |", meter="3/4")
    assert piece.meter == "3/4" and piece.meters == ["3/4"] * 4 and counts["bars_kept:3/4"] == 4
    assert _onsets(piece.rolls[0, 0]) == [(0, 60), (4, 62), (8, 64)]
    assert (piece.rolls[:, :, 12:] == OFF).all()  # steps 12..15 of a 12-step bar stay silent
    a = 69 - LOW
    assert piece.rolls[1, 0, 8, a] == ONSET and (piece.rolls[2, 0, 0:4, a] == HELD).all()


def test_six_eight_is_two_dotted_beats_and_three_eight_measures_pair_up():
    (jig,), _ = _pieces("ABc def | gfe dcB | ABc d3 | c6 |", meter="6/8", unit="1/8")
    assert jig.meter == "6/8" and len(jig.rolls) == 4
    assert [s for s, _ in _onsets(jig.rolls[0, 0])] == [0, 2, 4, 6, 8, 10]
    assert [s for s, _ in _onsets(jig.rolls[2, 0])] == [0, 2, 4, 6]
    (paired,), counts = _pieces("ABc | def | gfe | dcB | ABc | d3 | c3 |", meter="3/8", unit="1/8")
    assert paired.meter == "6/8" and len(paired.rolls) == 3 and counts["dropped:unpaired_3/8"] == 1
    assert [s for s, _ in _onsets(paired.rolls[0, 0])] == [0, 2, 4, 6, 8, 10]


def test_other_meters_are_dropped_and_counted():
    pieces, counts = _pieces("CDE | FGA | Bcd | edc |", meter="3/2", unit="1/2")
    assert pieces == []
    assert counts["measures_dropped:3/2"] == counts["measures:3/2"] == 4
    assert counts["ql_dropped:3/2"] == 24.0 and counts["dropped:meter"] == 4


def _measures_score(spec: list[tuple[str | None, int]]):
    """A one-part score of measures ``(new time signature or None, number of quarter notes)``."""
    from music21 import meter, note, stream

    part = stream.Part()
    for ts, quarters in spec:
        m = stream.Measure()
        if ts:
            m.timeSignature = meter.TimeSignature(ts)
        for _ in range(quarters):
            m.append(note.Note("C5", quarterLength=1))
        part.append(m)
    return stream.Score([part])


def test_meter_change_cuts_the_piece_into_gap_free_runs():
    spec = [
        ("4/4", 4),
        (None, 4),
        (None, 4),
        ("3/4", 3),
        (None, 3),
        (None, 3),
        ("3/2", 6),
        ("4/4", 4),
        (None, 4),
        (None, 4),
        (None, 4),
    ]
    counts: Counter = Counter()
    pieces = corpus.score_to_pieces(_measures_score(spec), "test#X1", counts)
    assert [(len(p.rolls), p.meter) for p in pieces] == [(3, "4/4"), (3, "3/4"), (4, "4/4")]
    assert [p.name for p in pieces] == ["test#X1", "test#X1@2", "test#X1@3"]
    assert {p.work for p in pieces} == {"test#X1"}
    assert counts["measures_dropped:3/2"] == 1 and counts["measures:4/4"] == 7


def test_measures_waiting_for_a_partner_are_counted_under_their_own_meter():
    spec = [
        ("2/4", 2),
        (None, 2),
        (None, 2),
        ("3/4", 3),
        (None, 3),
        ("4/4", 1),
        (None, 4),
        (None, 4),
        (None, 4),
    ]
    counts: Counter = Counter()
    pieces = corpus.score_to_pieces(_measures_score(spec), "w", counts)
    assert counts["measures_dropped:2/4"] == 1 and counts["dropped:unpaired_2/4"] == 1
    assert counts["measures:3/4"] == 2 and counts["measures_dropped:3/4"] == 0
    assert counts["bars_short_run"] == 3  # the lone 2/4 pair, the two 3/4 bars
    (piece,) = pieces  # the 4/4 upbeat after the change from 3/4 is a pickup: padded, then 3 bars
    assert len(piece.rolls) == 4 and counts["pickup_padded"] == 1
    assert _onsets(piece.rolls[0, 0]) == [(12, 72)]


def test_music21_ignores_inline_abc_meter_changes_so_those_measures_drop_as_incomplete():
    pieces, counts = _pieces("CDEF | GABc | CDEF | [M:3/4] CDE | FGA | [M:4/4] CDEF | GABc | cBAG | FEDC |")
    assert [len(p.rolls) for p in pieces] == [3, 4]
    assert counts["dropped:incomplete_measure"] == 2


def test_pickup_is_padded_so_the_first_full_bar_starts_on_the_bar_line():
    (piece,), counts = _pieces("G | c2 e2 d2 B2 | c8 | c8 |", unit="1/8")
    assert _onsets(piece.rolls[0, 0]) == [(14, 67)]  # the upbeat eighth sits just before bar 1
    assert _onsets(piece.rolls[1, 0]) == [(0, 72), (4, 76), (8, 74), (12, 71)]
    assert counts["pickup_padded"] == 1 and counts["pickup_padded_ql"] == 3.5


def test_triplet_eighths_are_quantized_and_grace_notes_dropped():
    (piece,), counts = _pieces("(3CDE F2 G2 A2 | {g}c8 | c8 |", unit="1/8")
    assert _onsets(piece.rolls[0, 0]) == [(0, 60), (1, 62), (3, 64), (4, 65), (8, 67), (12, 69)]
    assert counts["notes_quantized"] == 2 and counts["notes_grace"] == 1


def test_sixteenth_triplets_lose_their_off_grid_note():
    (piece,), counts = _pieces("(3CDE F2 G4 A8 | c16 | c16 |", unit="1/16")
    assert counts["notes_offgrid"] + counts["notes_too_short"] == 1
    assert len(_onsets(piece.rolls[0, 0])) == 5


def test_parts_ranked_by_pitch_melody_harmony_bass():
    from music21 import note, stream

    score = stream.Score()
    for pitches in (["C4"] * 12, ["C6"] * 12, ["C2"] * 12, ["E4"] * 12):
        part = stream.Part()
        for p in pitches:
            part.append(note.Note(p, quarterLength=1))
        score.append(part.makeMeasures())
    (piece,) = corpus.score_to_pieces(score, "four parts", Counter())
    assert _onsets(piece.rolls[0, 0])[0] == (0, 84)  # C6
    assert {p for _, p in _onsets(piece.rolls[0, 1])} == {60, 64}
    assert _onsets(piece.rolls[0, 2])[0] == (0, 36)  # C2
    assert not piece.melody_only


# ---------------------------------------------------------------------------------------------------
# End to end on real corpus pieces


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    summary = data.build_dataset(
        cache, jobs=1, limit_per_collection=3, collections=["bach", "oneills"], progress=False
    )
    return cache, summary, data.load_dataset(cache)


def test_build_writes_a_consistent_table(built):
    _, summary, ds = built
    n = len(ds)
    assert summary.bars == n > 50 and summary.units_parsed == summary.units
    assert ds.rolls.shape == (n, 3, 16, 64) and ds.rolls.dtype == np.uint8
    for name, dtype in [("piece", np.int32), ("bar", np.int32), ("style", np.int8), ("split", np.int8)]:
        arr = getattr(ds, name)
        assert arr.dtype == dtype and arr.shape == (n,)
    assert ds.attrs.shape == (n, 4) and ds.attrs.dtype == np.float32
    assert ds.tonic.dtype == np.int8 and ds.melody_only.dtype == bool
    assert set(ds.style_names) == set(corpus.STYLES)
    for p in np.unique(ds.piece):
        rows = np.nonzero(ds.piece == p)[0]
        assert (np.diff(rows) == 1).all() and (ds.bar[rows] == np.arange(len(rows))).all()
        assert len(rows) >= corpus.MIN_BARS
    chorale = ds.style == ds.style_names.index("chorale")
    assert not ds.melody_only[chorale].any() and ds.melody_only[~chorale].all()
    assert ds.rolls[ds.melody_only][:, 1:].max() == OFF


def test_rebuild_parses_nothing_and_gives_the_same_table(built):
    cache, _, ds = built
    again = data.build_dataset(
        cache, jobs=1, limit_per_collection=3, collections=["bach", "oneills"], progress=False
    )
    assert again.units_parsed == 0
    np.testing.assert_array_equal(data.load_dataset(cache).rolls, ds.rolls)


def test_split_is_by_work_and_deterministic(built):
    _, _, ds = built
    works: dict[str, set] = {}
    for p, name in enumerate(ds.piece_names):
        splits = set(ds.split[ds.piece == p].tolist())
        assert len(splits) == 1  # no piece is cut across splits
        works.setdefault(name.split("@")[0], set()).update(splits)
    assert all(len(s) == 1 for s in works.values())  # nor a work
    assert [data.split_of(w) for w in works] == [data.split_of(w) for w in works]
    shares = np.bincount([data.split_of(f"work {i}") for i in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.03)


def test_mode_and_tonic_labels_of_a_major_and_a_minor_chorale(built):
    _, _, ds = built
    for name, mode, tonic in [("bach/bwv1.6.mxl", 1, 5), ("bach/bwv101.7.mxl", -1, 2)]:  # F major, d minor
        rows = ds.piece == ds.piece_names.index(name)
        assert np.sign(np.median(ds.attrs[rows, 1])) == mode
        assert np.bincount(ds.tonic[rows], minlength=12).argmax() == tonic
        assert (ds.attrs[rows, 0] >= 1).all() and (ds.attrs[rows, 3] >= 1).all()  # density, polyphony


def test_phrase_from_the_corpus_round_trips_through_midi(built, tmp_path):
    _, _, ds = built
    start = ds.phrase_starts(3)[5]
    phrase = ds.rolls[start : start + 3]
    assert (phrase[:, :, 0] == HELD).any() or (phrase == ONSET).sum() > 10
    midi.roll_to_midi(phrase, tmp_path / "phrase.mid")
    np.testing.assert_array_equal(midi.midi_to_roll(tmp_path / "phrase.mid"), phrase)


def test_phrase_starts_never_cross_pieces(built):
    _, _, ds = built
    starts = ds.phrase_starts(3)
    assert len(starts) == len(ds) - 2 * len(ds.piece_names)
    assert (ds.piece[starts] == ds.piece[starts + 2]).all()
    assert set(ds.split[ds.phrase_starts(3, split=0)].tolist()) <= {0}


def test_report_is_written(built, tmp_path):
    from musicbox.model import stats

    cache, _, ds = built
    report = stats.write_report(ds, data.read_meta(cache), tmp_path / "report")
    text = report.read_text()
    assert "## Meters" in text and "| chorale |" in text and "grace note" in text
    assert "## Tune forms" in text and "| chorale | all |" in text
    assert (tmp_path / "report" / "meters.png").stat().st_size > 1000


def test_missing_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(DatasetError, match="musicbox data build"):
        data.load_dataset(tmp_path)


def test_unknown_collection_lists_the_known_ones():
    with pytest.raises(DatasetError, match="palestrina"):
        corpus.collection("nope")


def test_cli_build_then_stats(tmp_path, capsys):
    from musicbox.cli import main

    cache, out = str(tmp_path / "cache"), str(tmp_path / "report")
    build = ["data", "--cache", cache, "build", "--collections", "bach", "--limit-per-collection", "1"]
    assert main([*build, "--jobs", "1", "--no-progress"]) == 0
    assert "1 work units (1 parsed" in capsys.readouterr().out
    assert main(["data", "--cache", cache, "stats", "--out", out]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Repetition structure" in report and "| chorale | 1 |" in report
    assert main(["data", "--cache", cache, "build", "--collections", "nope"]) == 1
    assert "choose among" in capsys.readouterr().err


def test_repeats_are_played_so_an_aabb_tune_is_aabb():
    from collections import Counter

    from music21 import converter

    tune = "X:1\nT:t\nM:4/4\nL:1/4\nK:C\n|:CDEF|GABc:|\n|:cBAG|FEDC:|\n"
    counts = Counter()
    (piece,) = corpus.score_to_pieces(converter.parse(tune, format="abc"), "t", counts)
    assert counts["repeats_expanded"] == 1 and len(piece.rolls) == 8
    np.testing.assert_array_equal(piece.rolls[0:2], piece.rolls[2:4])  # A A
    np.testing.assert_array_equal(piece.rolls[4:6], piece.rolls[6:8])  # B B
    assert not np.array_equal(piece.rolls[0], piece.rolls[4])


def test_place_counts_from_the_first_full_bar_and_repeats_name_the_bar_repeated():
    from musicbox.model import form

    upbeat, _ = _pieces("G | c2 e2 d2 B2 | c8 | c8 | c2 e2 d2 B2 | A8 | G8 | c2 e2 d2 B2 | c8 |", unit="1/8")
    (piece,) = upbeat
    assert form.has_pickup(piece.rolls)
    assert form.section_positions(piece.rolls).tolist() == [7, 0, 1, 2, 3, 4, 5, 6, 7]  # bar 0: an upbeat
    assert form.repeat_lags(piece.rolls).tolist() == [0, 0, 0, 1, 3, 0, 0, 3, 5]  # the nearest one it repeats
    (plain,), _ = _pieces("CDEF | GABc | cBAG | FEDC |")
    assert not form.has_pickup(plain.rolls) and form.section_positions(plain.rolls).tolist() == [0, 1, 2, 3]


def test_the_table_carries_place_and_repeats(built):
    from musicbox.model import form

    _, _, ds = built
    for p in np.unique(ds.piece):
        rows = np.nonzero(ds.piece == p)[0]
        np.testing.assert_array_equal(ds.place[rows], form.section_positions(ds.rolls[rows]))
        np.testing.assert_array_equal(ds.repeats[rows], form.repeat_lags(ds.rolls[rows]))
    assert ds.place.dtype == np.int8 and ds.repeats.dtype == np.int8 and (ds.repeats > 0).any()

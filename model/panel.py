"""The feature panel of ``musicbox eval``: the music measured broadly, generated against real, per style.

Each feature is one number per piece (NaN where a piece cannot show it: a melody-only tune has no inner
voice to move in parallel with), averaged over pieces, generated (the form section's
:data:`~musicbox.model.form.FORM_BARS`-bar pieces from a fresh generator at the default variation) against
held-out real pieces of the same style with their repeats played. Per style the panel reports each
feature's ratio generated / real and one summary: the share of features *within* :data:`BAND` of real
(a feature also counts as within when the two differ by less than its :attr:`Feature.tolerance`, so two
figures near zero, 0.1 and 0.3 parallel fifths per 100 moves, are not called apart by their ratio),
naming the features outside with their figures. For the styles with inner voices it also reports the
voice-leading features of the same seeds' pieces played without the decoder's voice-leading pass
(``runtime/voicing.py``): without / with / real.

The features (:data:`FEATURES`; their own functions here, or the form metrics of ``model/form.py`` and the
meter section's onset profile, ``model/meter_eval.py``, where those already measure them):

- **repetition**: mean onset-Jaccard similarity of bars ``lag`` apart for lags 1-16 (a selection), how
  far lags 4 and 8 stand above their neighbours (the stripes of a form), the share of 2-bar spans
  returning and of bars repeating an earlier bar;
- **key**: the share of bars whose 8-bar-window key is the home key, key changes between consecutive
  bars' windows per 100 bars, windows in the other mode;
- **cadences**: downbeats that cadence (tonic bass under a held melody), the share of those reached from
  the dominant (V -> I) and from the subdominant (IV -> I) in the bass, half cadences (dominant bass under
  a held melody) per downbeat;
- **voice-leading over every pair of four voices** (melody top, harmony top, harmony bottom, bass
  bottom: :data:`VOICES`), at every step where both voices move: parallel fifths and octaves per 100
  moves, all pairs pooled and melody-bass alone; semitone clashes in the sonorities of the strong beats
  and of the weak beats (the meter's); suspensions (a note held into a strong beat, a second from
  another voice, resolving down by step within the beat) per 100 strong-beat sonorities;
- **breath**: bars with a melody rest of a beat or more per 100 bars, melody notes of two bars or more
  per 100 bars, melody notes of a bar or more (share), bars without melody (share);
- **ranges** per track (semitones between the lowest and highest onset of each 16-bar window);
- **rhythm classes** of melody notes by length (sixteenth, eighth, quarter, longer), onsets on the
  off-eighth sixteenths;
- **melodic motion**: repeated notes, steps (1-2 semitones) and leaps (5+) among melody intervals;
- **texture**: onsets per bar per track, polyphony;
- **meter**: per meter a style plays, the downbeat's onsets over the other beats' (the accent) and the
  share of onsets off the beats, from the meter's onset profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicbox.model import form
from musicbox.runtime.features import density, polyphony, windowed_key
from musicbox.runtime.meter import COMMON, METERS, Meter
from musicbox.runtime.pianoroll import DEFAULT, HELD, OFF, ONSET

BAND = (0.67, 1.5)
"""A feature is within the band when generated / real lies in it."""

MELODY, HARMONY, BASS = 0, 1, 2

VOICES = ("melody", "harmony_top", "harmony_bottom", "bass")
"""The four voices the voice-leading features read: (track, top) for each."""
_VOICE_LINES = ((MELODY, True), (HARMONY, True), (HARMONY, False), (BASS, False))

SIMILARITY_LAGS = (1, 2, 3, 4, 5, 6, 8, 12, 16)
"""Lags (bars) of the repetition features."""


@dataclass(frozen=True)
class Feature:
    """name (the results key), label (what the report says), tolerance: the absolute difference from
    real under which a feature counts as within the band whatever its ratio."""

    name: str
    label: str
    tolerance: float


def _f(name: str, label: str, tolerance: float) -> Feature:
    return Feature(name, label, tolerance)


FEATURES: tuple[Feature, ...] = (
    *(_f(f"similarity_lag{lag}", f"bar similarity at lag {lag}", 0.02) for lag in SIMILARITY_LAGS),
    _f("lag4_peak", "lag-4 peak (similarity above lags 3 and 5)", 0.02),
    _f("lag8_peak", "lag-8 peak (similarity above lags 7 and 9)", 0.02),
    _f("phrase_return_rate", "2-bar spans returning", 0.02),
    _f("bar_repeat_rate", "bars repeating an earlier bar", 0.02),
    _f("home_key", "bars in the home key (8-bar windows)", 0.03),
    _f("key_changes_per_100", "key changes per 100 bars", 1.0),
    _f("mode_flips", "windows in the other mode", 0.03),
    _f("cadence_rate", "cadence downbeats", 0.02),
    _f("authentic_share", "cadences from the dominant (V -> I)", 0.05),
    _f("plagal_share", "cadences from the subdominant (IV -> I)", 0.05),
    _f("half_cadences", "half cadences per downbeat", 0.02),
    _f("parallel_fifths_all", "parallel fifths per 100 moves, every voice pair", 0.5),
    _f("parallel_octaves_all", "parallel octaves per 100 moves, every voice pair", 0.5),
    _f("parallel_fifths_outer", "parallel fifths per 100 moves, melody-bass", 0.5),
    _f("parallel_octaves_outer", "parallel octaves per 100 moves, melody-bass", 0.5),
    _f("clashes_strong", "strong-beat sonorities with a semitone clash", 0.02),
    _f("clashes_weak", "weak-beat sonorities with a semitone clash", 0.02),
    _f("suspensions_per_100", "suspensions per 100 strong-beat sonorities", 0.5),
    _f("melody_rests_per_100", "bars with a melody rest >= 1 beat, per 100", 2.0),
    _f("long_notes_per_100", "melody notes >= 2 bars, per 100 bars", 1.0),
    _f("long_notes", "melody notes >= 1 bar (share)", 0.02),
    _f("melody_silent_bars", "bars without melody (share)", 0.02),
    _f("range_melody", "melody range (semitones / 16 bars)", 1.0),
    _f("range_harmony", "harmony range (semitones / 16 bars)", 1.0),
    _f("range_bass", "bass range (semitones / 16 bars)", 1.0),
    _f("rhythm_sixteenths", "melody notes of a sixteenth (share)", 0.02),
    _f("rhythm_eighths", "melody notes of an eighth (share)", 0.02),
    _f("rhythm_quarters", "melody notes of 3-4 sixteenths (share)", 0.02),
    _f("rhythm_longer", "melody notes longer than a quarter (share)", 0.02),
    _f("sixteenth_onsets", "onsets on off-eighth sixteenths (share)", 0.02),
    _f("melody_repeats", "melody intervals: repeated notes (share)", 0.02),
    _f("melody_steps", "melody intervals: steps of 1-2 semitones (share)", 0.02),
    _f("melody_leaps", "melody intervals: leaps of 5+ semitones (share)", 0.02),
    _f("density_variation", "bar-to-bar variation of onsets (std / mean)", 0.03),
    _f("onsets_melody", "melody onsets per bar", 0.2),
    _f("onsets_harmony", "harmony onsets per bar", 0.2),
    _f("onsets_bass", "bass onsets per bar", 0.2),
    _f("polyphony", "sounding notes per busy step", 0.1),
)
"""The panel's features of a style's own-meter pieces (the accent features per meter come on top:
:func:`meter_feature`)."""

ACCENT_TOLERANCE = 0.05


def meter_feature(name: str, meter: str) -> Feature:
    """The accent feature ``name`` (``accent`` or ``offbeat``) of ``meter``."""
    if name == "accent":
        return Feature(f"accent_{meter}", f"{meter}: downbeat onsets / other beats' onsets", ACCENT_TOLERANCE)
    return Feature(f"offbeat_{meter}", f"{meter}: onsets off the beats (share)", 0.02)


# -- voices over time -------------------------------------------------------------------------------


def stream(roll: np.ndarray, meter: Meter = COMMON) -> np.ndarray:
    """The bars of ``roll [n, T, 16, P]`` in ``meter`` played one after another, a short bar's padding
    left out: ``[T, n * meter.steps, P]``."""
    cropped = roll[:, :, : meter.steps]
    return cropped.transpose(1, 0, 2, 3).reshape(roll.shape[1], -1, roll.shape[-1])


def voice_line(flat: np.ndarray, track: int, top: bool) -> np.ndarray:
    """The highest (``top``) or lowest sounding pitch row of ``track`` at each step of ``flat [T, time,
    P]``, -1 where it is silent: int ``[time]``."""
    sounding = flat[track] > OFF
    any_on = sounding.any(axis=1)
    line = flat.shape[-1] - 1 - np.argmax(sounding[:, ::-1], axis=1) if top else np.argmax(sounding, axis=1)
    return np.where(any_on, line, -1)


def parallel_moves(upper: np.ndarray, lower: np.ndarray) -> tuple[int, int, int]:
    """(moves, parallel fifths, parallel octaves) of two voice lines (pitch rows, -1 silent): a *move* is
    a step at which both voices change pitch since the last step both sounded (a silence in either
    starts afresh); a parallel is a move in the same direction keeping a fifth (an octave, or a
    unison), compound or not."""
    both = (upper >= 0) & (lower >= 0)
    moves = fifths = octaves = 0
    prev: tuple[int, int] | None = None
    for t in range(len(upper)):
        if not both[t]:
            prev = None
            continue
        m, b = int(upper[t]), int(lower[t])
        if prev is not None and m != prev[0] and b != prev[1]:
            moves += 1
            same_way = np.sign(m - prev[0]) == np.sign(b - prev[1])
            before, now = (prev[0] - prev[1]) % 12, (m - b) % 12
            fifths += bool(same_way and before == now == 7)
            octaves += bool(same_way and before == now == 0)
        prev = (m, b)
    return moves, fifths, octaves


def parallels(
    roll: np.ndarray, pairs: tuple[tuple[int, int], ...], meter: Meter = COMMON
) -> dict[str, float]:
    """Parallel fifths and octaves per 100 moves over the voice pairs ``pairs`` (indices into
    :data:`VOICES`, upper first), pooled."""
    flat = stream(roll, meter)
    lines = [voice_line(flat, track, top) for track, top in _VOICE_LINES]
    moves = fifths = octaves = 0
    for u, v in pairs:
        m, f, o = parallel_moves(lines[u], lines[v])
        moves, fifths, octaves = moves + m, fifths + f, octaves + o
    if not moves:
        return {"fifths": float("nan"), "octaves": float("nan")}
    return {"fifths": 100.0 * fifths / moves, "octaves": 100.0 * octaves / moves}


ALL_PAIRS = tuple((u, v) for u in range(len(VOICES)) for v in range(u + 1, len(VOICES)))
OUTER = ((0, 3),)


def _pitch_classes(cells: np.ndarray) -> set[int]:
    return {(int(p) + DEFAULT.pitch_low) % 12 for p in np.nonzero(cells)[0]}


def clash_share(roll: np.ndarray, steps: tuple[int, ...], meter: Meter = COMMON) -> float:
    """Share of the sonorities (2+ pitch classes, every track) at the bar steps ``steps`` holding two
    pitch classes a semitone apart."""
    sounding = np.asarray((roll[:, :, : meter.steps] > OFF).any(axis=1))  # [n, steps, P]
    chords = clashes = 0
    for bar in sounding:
        for step in steps:
            pcs = _pitch_classes(np.asarray(bar[step]))
            if len(pcs) < 2:
                continue
            chords += 1
            clashes += any((pc + 1) % 12 in pcs for pc in pcs)
    return clashes / chords if chords else float("nan")


def suspensions_per_100(roll: np.ndarray, meter: Meter = COMMON) -> float:
    """Suspensions per 100 strong-beat sonorities: a note held (not struck) into a strong beat, a
    second (1-2 semitones, any octave) from another sounding pitch class there, whose track strikes a
    pitch 1-2 semitones below it within the beat (the resolution)."""
    flat = stream(roll, meter)
    sounding = flat > OFF
    chords = found = 0
    beat = meter.beat_steps
    for bar in range(len(roll)):
        for step in meter.strong:
            t = bar * meter.steps + step
            pcs = _pitch_classes(np.asarray(sounding[:, t].any(axis=0)))
            if len(pcs) < 2:
                continue
            chords += 1
            hit = False
            for track in range(flat.shape[0]):
                for p in np.nonzero(flat[track, t] == HELD)[0]:
                    pc = (int(p) + DEFAULT.pitch_low) % 12
                    others = _pitch_classes(np.delete(sounding[:, t].any(axis=0), p))
                    if not any((pc - o) % 12 in (1, 2, 10, 11) for o in others):
                        continue
                    later = flat[track, t + 1 : t + 1 + beat]
                    if any(p - d >= 0 and (later[:, p - d] == ONSET).any() for d in (1, 2)):
                        hit = True
            found += hit
    return 100.0 * found / chords if chords else float("nan")


VOICE_LEADING = (
    "parallel_fifths_all",
    "parallel_octaves_all",
    "parallel_fifths_outer",
    "parallel_octaves_outer",
    "clashes_strong",
    "clashes_weak",
    "suspensions_per_100",
)
"""The voice-leading features, which the panel also reports for pieces played without the decoder's
voice-leading pass (``runtime/voicing.py``)."""


def voice_leading(roll: np.ndarray, meter: Meter = COMMON) -> dict[str, float]:
    """The :data:`VOICE_LEADING` features of one piece in ``meter``."""
    weak = tuple(b for b in meter.beats if b not in meter.strong)
    every = parallels(roll, ALL_PAIRS, meter)
    outer = parallels(roll, OUTER, meter)
    return {
        "parallel_fifths_all": every["fifths"],
        "parallel_octaves_all": every["octaves"],
        "parallel_fifths_outer": outer["fifths"],
        "parallel_octaves_outer": outer["octaves"],
        "clashes_strong": clash_share(roll, meter.strong, meter),
        "clashes_weak": clash_share(roll, weak, meter) if weak else float("nan"),
        "suspensions_per_100": suspensions_per_100(roll, meter),
    }


# -- cadences, key ----------------------------------------------------------------------------------


def cadence_types(roll: np.ndarray) -> dict[str, float]:
    """Of the cadence downbeats (``form.cadence_downbeats``): the share whose lowest sounding pitch just
    before (the last one of the bar before) is the dominant (V -> I) and the subdominant (IV -> I); and
    half cadences (the dominant lowest under a held melody) per downbeat."""
    tonic, _, _ = windowed_key(roll, radius=2)
    arrivals = form.cadence_downbeats(roll, tonic)
    half = form.cadence_downbeats(roll, (tonic + 7) % 12)
    sounding = form._sounding(roll)  # [n * S, P]
    steps = roll.shape[2]
    authentic = plagal = 0
    for i in np.nonzero(arrivals)[0]:
        if i == 0:
            continue
        before = sounding[(i - 1) * steps : i * steps].any(axis=1).nonzero()[0]
        if not len(before):
            continue
        pitches = np.nonzero(sounding[(i - 1) * steps + before[-1]])[0]
        interval = (int(pitches[0]) + DEFAULT.pitch_low - int(tonic[i])) % 12
        authentic += interval == 7
        plagal += interval == 5
    n = int(arrivals[1:].sum())
    return {
        "authentic_share": authentic / n if n else float("nan"),
        "plagal_share": plagal / n if n else float("nan"),
        "half_cadences": float(half.mean()) if len(half) else float("nan"),
    }


def key_changes_per_100(roll: np.ndarray) -> float:
    """Changes of the 8-bar-window key (tonic or mode) between consecutive busy bars, per 100 bars."""
    _, _, tonic, mode, busy = form.window_keys(roll)
    keys = np.stack([tonic, mode], axis=1)[busy]
    if len(keys) < 2:
        return float("nan")
    return 100.0 * float((keys[1:] != keys[:-1]).any(axis=1).sum()) / len(roll)


# -- breath, rhythm, melody -------------------------------------------------------------------------


def long_notes_per_100(roll: np.ndarray, bars: int = 2) -> float:
    """Melody notes lasting ``bars`` bars or longer, per 100 bars."""
    notes = form.melody_notes(roll)
    if not notes:
        return float("nan")
    return 100.0 * sum(n.duration >= bars * roll.shape[2] for n in notes) / len(roll)


def melody_silent_bars(roll: np.ndarray) -> float:
    """Share of bars in which the melody sounds nothing (NaN for a piece without melody)."""
    sounding = (roll[:, MELODY] > OFF).any(axis=(1, 2))
    return float(1.0 - sounding.mean()) if sounding.any() else float("nan")


RHYTHM_CLASSES = {"sixteenths": (1, 1), "eighths": (2, 2), "quarters": (3, 4), "longer": (5, 10**9)}
"""Melody note lengths (steps, inclusive) of each rhythm class."""


def rhythm_classes(roll: np.ndarray) -> dict[str, float]:
    """Share of melody notes in each of :data:`RHYTHM_CLASSES`."""
    durations = np.array([n.duration for n in form.melody_notes(roll)])
    if not len(durations):
        return {f"rhythm_{k}": float("nan") for k in RHYTHM_CLASSES}
    return {
        f"rhythm_{k}": float(((durations >= lo) & (durations <= hi)).mean())
        for k, (lo, hi) in RHYTHM_CLASSES.items()
    }


def sixteenth_onsets(roll: np.ndarray, meter: Meter = COMMON) -> float:
    """Share of onsets (every track) on the odd sixteenths of the bar (off the eighth grid)."""
    counts = (roll[:, :, : meter.steps] == ONSET).sum(axis=(0, 1, 3))
    return float(counts[1::2].sum() / counts.sum()) if counts.sum() else float("nan")


def melodic_motion(roll: np.ndarray) -> dict[str, float]:
    """Shares of melody intervals (between consecutive melody notes' top pitches) that repeat the
    pitch, move by 1-2 semitones, leap by 5 or more."""
    starts: dict[int, int] = {}
    for n in form.melody_notes(roll):
        starts[n.start] = max(starts.get(n.start, 0), n.pitch)
    pitches = np.array([starts[k] for k in sorted(starts)])
    if len(pitches) < 2:
        return {"melody_repeats": float("nan"), "melody_steps": float("nan"), "melody_leaps": float("nan")}
    moves = np.abs(np.diff(pitches))
    return {
        "melody_repeats": float((moves == 0).mean()),
        "melody_steps": float(((moves >= 1) & (moves <= 2)).mean()),
        "melody_leaps": float((moves >= 5).mean()),
    }


def density_variation(roll: np.ndarray) -> float:
    """How much a piece's bars differ in note density: the standard deviation of its bars' onsets (every
    track) over their mean, over the bars with an onset (NaN for fewer than two). Real music breathes,
    a busy bar beside a held one; a model asked for the same density at every bar writes them alike."""
    counts = density(roll).astype(np.float64)
    counts = counts[counts > 0]
    return float(counts.std() / counts.mean()) if len(counts) >= 2 else float("nan")


def track_onsets(roll: np.ndarray) -> dict[str, float]:
    """Onsets per bar of each track (NaN for a track silent throughout: a melody-only piece's bass)."""
    counts = (roll == ONSET).sum(axis=(0, 2, 3)) / len(roll)
    names = ("onsets_melody", "onsets_harmony", "onsets_bass")
    return {k: float(c) if c > 0 else float("nan") for k, c in zip(names, counts, strict=True)}


# -- meter ------------------------------------------------------------------------------------------


def accent(rolls: np.ndarray, meter: Meter) -> dict[str, float]:
    """From the onset profile (``meter_eval.onset_profile``) of ``rolls`` in ``meter``: the downbeat's
    onsets over the mean of the other beats' (``accent``), and the share of onsets off the beats
    (``offbeat``)."""
    from musicbox.model.meter_eval import onset_profile

    profile = onset_profile(rolls, meter)
    others = np.mean([profile[b] for b in meter.beats[1:]]) if len(meter.beats) > 1 else np.nan
    total = profile.sum()
    off = total - sum(profile[b] for b in meter.beats)
    return {
        "accent": float(profile[0] / others) if others and np.isfinite(others) else float("nan"),
        "offbeat": float(off / total) if total else float("nan"),
    }


# -- one piece, one style ---------------------------------------------------------------------------


def piece_panel(roll: np.ndarray, meter: Meter = COMMON) -> dict[str, float]:
    """Every :data:`FEATURES` value of one piece ``[n_bars, 3, 16, 64]`` in ``meter`` (a 4/4 piece: the
    bar-based form metrics read 16-step bars), plus its meter's ``accent_*`` and ``offbeat_*``."""
    sim = form.similarity_matrix(roll)
    profile = form.lag_profile(sim)
    key = form.key_stability(roll)
    cad = form.cadence_profile(roll[form.has_pickup(roll) :])
    busy = (roll > OFF).any(axis=(1, 3)).reshape(-1)
    poly = polyphony(roll)
    out = {
        **{f"similarity_lag{lag}": float(profile[lag]) for lag in SIMILARITY_LAGS},
        "lag4_peak": form.lag_peak(profile, 4),
        "lag8_peak": form.lag_peak(profile, 8),
        "phrase_return_rate": form.phrase_return_rate(roll),
        "bar_repeat_rate": form.bar_repeat_rate(sim, roll),
        "home_key": key["home_key"],
        "key_changes_per_100": key_changes_per_100(roll),
        "mode_flips": key["mode_flips"],
        "cadence_rate": float(np.nanmean(cad)),
        **cadence_types(roll),
        **voice_leading(roll, meter),
        "melody_rests_per_100": form.rest_bars_per_100(roll),
        "long_notes_per_100": long_notes_per_100(roll),
        "long_notes": form.long_note_share(roll),
        "melody_silent_bars": melody_silent_bars(roll),
        "range_melody": form.melody_range(roll, track=MELODY),
        "range_harmony": form.melody_range(roll, track=HARMONY),
        "range_bass": form.melody_range(roll, track=BASS),
        **rhythm_classes(roll),
        "sixteenth_onsets": sixteenth_onsets(roll, meter),
        **melodic_motion(roll),
        "density_variation": density_variation(roll),
        **track_onsets(roll),
        "polyphony": float(poly[busy.reshape(len(roll), -1).any(axis=1)].mean())
        if busy.any()
        else float("nan"),
    }
    meter_figures = accent(roll, meter)
    out[f"accent_{meter.name}"] = meter_figures["accent"]
    out[f"offbeat_{meter.name}"] = meter_figures["offbeat"]
    return out


def meter_panel(roll: np.ndarray, meter: Meter) -> dict[str, float]:
    """The accent features of one piece in a style's other ``meter``."""
    figures = accent(roll, meter)
    return {f"accent_{meter.name}": figures["accent"], f"offbeat_{meter.name}": figures["offbeat"]}


def compare(real: dict[str, float], model: dict[str, float], features: list[Feature]) -> dict:
    """Per feature real, model, ratio and whether it is within :data:`BAND` (or the tolerance); the share
    of features within, and the names of those outside (features NaN on either side are left out)."""
    rows, outside = {}, []
    for f in features:
        r, m = real.get(f.name, float("nan")), model.get(f.name, float("nan"))
        if not (np.isfinite(r) and np.isfinite(m)):
            continue
        ratio = m / r if r else (1.0 if m == 0 else float("inf"))
        within = bool(BAND[0] <= ratio <= BAND[1] or abs(m - r) <= f.tolerance)
        rows[f.name] = {"real": r, "model": m, "ratio": ratio, "within": within}
        if not within:
            outside.append(f.name)
    share = (len(rows) - len(outside)) / len(rows) if rows else float("nan")
    return {"features": rows, "share_within": share, "outside": outside}


def panel_evaluation(bundle, dataset, seeds: int, rng, pieces: dict | None = None) -> dict:
    """The panel per style: ``pieces`` (style name -> {"real": [...], "model": [...]}, the form section's
    own-meter pieces) or, when None, ``2 x seeds`` generated pieces per style and 40 held-out real ones;
    for each other meter a style plays, ``2 x seeds`` 16-bar pieces and real pieces of that meter for the
    accent features. ``dataset`` holds every meter. ``voicing_pass``: per style with inner voices, the
    :data:`VOICE_LEADING` features of the same seeds' pieces played without the voice-leading pass, with
    it, and real."""
    from musicbox.model.form import FORM_BARS
    from musicbox.model.form_eval import generated_piece, real_pieces
    from musicbox.runtime.controls import VARIATION, Controls

    def played(s: int, bars: int, meter: str = "", voicing: bool = True) -> list[np.ndarray]:
        controls = [Controls(float(s), 100.0, mood, VARIATION, meter=meter) for mood in (-0.5, 0.5)]
        return [generated_piece(bundle, controls[k % 2], k, bars, voicing) for k in range(2 * seeds)]

    per_style, passes = {}, {}
    for s, style in enumerate(bundle.manifest.controls.styles):
        own = METERS[style.meters[0]]
        if pieces is not None and style.name in pieces and own.name == COMMON.name:  # the form's are 4/4
            sets = pieces[style.name]
        else:
            data = dataset.in_meters((own.name,))
            sets = {"real": real_pieces(data, s, 40, rng), "model": played(s, FORM_BARS)}
        figures = {name: form.summarize([piece_panel(r, own) for r in rolls]) for name, rolls in sets.items()}
        if np.isfinite(figures["real"]["parallel_fifths_all"]):  # a style with inner voices
            without = form.summarize([voice_leading(r, own) for r in played(s, FORM_BARS, voicing=False)])
            passes[style.name] = {
                k: {"without_pass": without[k], "with_pass": figures["model"][k], "real": figures["real"][k]}
                for k in VOICE_LEADING
            }
        features = [*FEATURES, meter_feature("accent", own.name), meter_feature("offbeat", own.name)]
        counts = {name: len(rolls) for name, rolls in sets.items()}
        for name in style.meters[1:]:
            meter = METERS[name]
            data = dataset.in_meters((name,))
            real = real_pieces(data, s, 40, rng)
            model = played(s, 16, name)
            figures["real"] |= form.summarize([meter_panel(r, meter) for r in real])
            figures["model"] |= form.summarize([meter_panel(r, meter) for r in model])
            features += [meter_feature("accent", name), meter_feature("offbeat", name)]
            counts[f"real_{name}"], counts[f"model_{name}"] = len(real), len(model)
        per_style[style.name] = compare(figures["real"], figures["model"], features) | {"pieces": counts}
    shares = [v["share_within"] for v in per_style.values()]
    return {
        "band": list(BAND),
        "per_style": per_style,
        "min_share_within": float(np.nanmin(shares)),
        "voicing_pass": passes,
    }


def panel_report_lines(panel: dict) -> list[str]:
    """The Markdown of the panel section."""
    labels = {f.name: f.label for f in FEATURES}
    for meter in METERS:
        for kind in ("accent", "offbeat"):
            f = meter_feature(kind, meter)
            labels[f.name] = f.label
    styles = list(panel["per_style"])
    lo, hi = panel["band"]
    lines = [
        "## Feature panel",
        "",
        f"Each feature generated vs held-out real pieces of the same style (repeats played), the ratio, and "
        f"whether it lies within {lo}-{hi}x real (or within the feature's tolerance of it: "
        "`model/panel.py`). Generated: the form section's pieces at the default variation; other meters: "
        "16-bar pieces.",
        "",
        "| style | features | within | share within | outside (model / real) |",
        "|---|---|---|---|---|",
    ]
    for name in styles:
        row = panel["per_style"][name]
        outside = ", ".join(
            f"{k} {row['features'][k]['model']:.3g} / {row['features'][k]['real']:.3g}"
            for k in row["outside"]
        )
        n = len(row["features"])
        lines.append(
            f"| {name} | {n} | {n - len(row['outside'])} | {row['share_within']:.2f} | {outside or '-'} |"
        )
    passes = panel.get("voicing_pass", {})
    if passes:
        lines += [
            "",
            "Voice-leading without the decoder's pass (`runtime/voicing.py`) / with it / real, the same seeds:",
            "",
            "| feature | " + " | ".join(passes) + " |",
            "|---|" + "---|" * len(passes),
        ]
        for key in VOICE_LEADING:
            cells = [
                " / ".join(f"{v[key][k]:.3g}" for k in ("without_pass", "with_pass", "real"))
                for v in passes.values()
            ]
            lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    keys = list(dict.fromkeys(k for name in styles for k in panel["per_style"][name]["features"]))
    lines += ["", "Model / real (ratio), `*` outside the band:", ""]
    lines += ["| feature | " + " | ".join(styles) + " |", "|---|" + "---|" * len(styles)]
    for key in keys:
        cells = []
        for name in styles:
            f = panel["per_style"][name]["features"].get(key)
            cells.append(
                "-"
                if f is None
                else f"{f['model']:.3g} / {f['real']:.3g} ({f['ratio']:.2f}){'' if f['within'] else ' *'}"
            )
        lines.append(f"| {labels.get(key, key)} | " + " | ".join(cells) + " |")
    return lines + [""]

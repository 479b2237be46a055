"""Forms from the corpus: model/form_plans.py counts the tune forms of real pieces, runtime/form.py draws
each tune's form from them (by the seed), and a bundle without plans plays as before, bit for bit."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pytest

from musicbox.errors import ManifestError
from musicbox.model.form_plans import (
    Candidate,
    best_candidates,
    candidates,
    corpus_plans,
    key_moves,
    letter_strings,
    returns,
)
from musicbox.model.styles import CHORALE_PLANS, CORPUS_RETURN_NOISE, FORMS, style_tables, with_forms
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.controls import Controls
from musicbox.runtime.form import FormPlan, FormSpec, plan, renew, store
from musicbox.runtime.generator import Generator
from musicbox.runtime.manifest import StyleInfo, parse_table
from musicbox.runtime.pianoroll import DEFAULT, ONSET
from musicbox.runtime.state import GeneratorState
from tests.helpers.tiny_model import random_dataset

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "bundle"


def _bars(n: int, rng) -> np.ndarray:
    """``n`` bars of 12 random melody and bass onsets each: no two alike."""
    rolls = np.zeros((n, 3, 16, 64), np.uint8)
    for bar in rolls:
        for _ in range(12):
            bar[rng.integers(0, 3), rng.integers(0, 16), rng.integers(0, 64)] = ONSET
    return rolls


def _strain(rng, pairs: bool) -> np.ndarray:
    """An 8-bar strain of new bars; with ``pairs`` its second phrase begins like its first (a a')."""
    bars = _bars(8, rng)
    if pairs:
        bars[4:7] = bars[0:3]
    return bars


def _tune(rng, pairs: bool = False) -> np.ndarray:
    """AABB in 8-bar strains, repeats played."""
    a, b = _strain(rng, pairs), _strain(rng, pairs)
    return np.concatenate([a, a, b, b])


def _in_key(n: int, tonic: int, rng) -> np.ndarray:
    """``n`` bars of random melody onsets on the major triad of ``tonic`` (a pitch class), the bass on it."""
    triad = [r for r in range(64) if (r + DEFAULT.pitch_low - tonic) % 12 in (0, 4, 7)]
    roots = [r for r in triad if (r + DEFAULT.pitch_low - tonic) % 12 == 0]
    rolls = np.zeros((n, 3, 16, 64), np.uint8)
    for bar in rolls:
        for step in range(0, 16, 2):
            bar[0, step, rng.choice(triad)] = ONSET
            bar[2, step, roots[0]] = ONSET
    return rolls


def test_key_moves_count_the_later_sections_that_move_and_where_to():
    rng = np.random.default_rng(4)
    data = _corpus(rng)
    rolls = data.rolls.copy()
    for p in range(0, 20, 5):  # style 0: AABA, A in C, B in G (every piece)
        a, b = _in_key(8, 0, rng), _in_key(8, 7, rng)
        rolls[p * 32 : (p + 1) * 32] = np.concatenate([a, a, b, a])
    moves = key_moves(replace(data, rolls=rolls), 0)
    assert moves == {"away": 1.0, "moves": [{"semitones": 7, "weight": 1.0}]}
    form = style_tables(replace(data, rolls=rolls), corpus_forms=False)[0]["form"]
    assert form["away"] == 1.0 and form["moves"] == [{"semitones": 7, "weight": 1.0}]


def test_letter_strings_are_the_distinct_repetition_patterns():
    assert letter_strings(3, "ABCD") == ["AAA", "AAB", "ABA", "ABB", "ABC"]
    assert len(letter_strings(5, "ABCD")) == 51  # Stirling numbers S(5, k), k <= 4


def test_a_form_predicts_its_returns_tune_after_tune():
    pairs = returns(Candidate("AABB", 8, 4, ""), bars=48)
    assert pairs[:2] == [(8, 0), (9, 1)] and (31, 23) in pairs and (15, 7) in pairs
    assert not any(16 <= i < 24 for i, _ in pairs)  # B's first playing is new
    assert (40, 32) in pairs and all(j >= 32 for i, j in pairs if i >= 32)  # a new tune: no return across
    phrases = returns(Candidate("AB", 8, 4, "aa"), bars=16)
    assert phrases == [(4, 0), (5, 1), (6, 2), (12, 8), (13, 9), (14, 10)]  # all but the cadence bar


def test_the_best_form_of_a_piece_is_the_one_its_returns_follow():
    rng = np.random.default_rng(0)
    strains, pairs, through = _tune(rng), _tune(rng, pairs=True), _bars(20, rng)
    best = best_candidates([strains, pairs, through], phrase_bars=4)
    assert best[0] == Candidate("AABB", 8, 4, "")
    assert best[1] == Candidate("AABB", 8, 4, "aa")
    assert returns(best[2], bars=20) == []  # nothing returns: a form that predicts nothing
    assert (
        best[2].section_bars in (4, 8) and abs(best[2].tune_bars - 20) <= 4
    )  # common sections, near its length


def test_a_stollen_of_five_bars_is_heard_as_one():
    rng = np.random.default_rng(3)
    stollen = _bars(5, rng)
    piece = np.concatenate([stollen, stollen, _bars(10, rng)])  # bar form: A A B, 5 + 5 + 10 bars
    (best,) = best_candidates([piece], phrase_bars=2)
    assert (
        best.section_bars == 5
        and best.sections.startswith("AAB")
        and returns(best, 20)[:5]
        == [
            (5, 0),
            (6, 1),
            (7, 2),
            (8, 3),
            (9, 4),
        ]
    )


def test_a_long_section_returns_whole_and_its_phrases_all_differ():
    rng = np.random.default_rng(4)
    a = _bars(16, rng)
    piece = np.concatenate([a, a, _bars(16, rng), a])  # AABA in 16-bar sections: 64 bars
    (best,) = best_candidates([piece], phrase_bars=4)
    assert best == Candidate("AABA", 16, 4, "")  # shorter sections would need 8 of them
    assert all(c.phrases == "" for c in candidates(4) if c.section_bars > 8)


def _corpus(rng) -> object:
    """A dataset whose style-0 pieces are reels (AABB, 3 of 4 with a a' phrases) and the rest random."""
    data = random_dataset(n_pieces=20, bars=32)
    rolls = data.rolls.copy()
    for p in range(0, 20, 5):  # style 0
        rolls[p * 32 : (p + 1) * 32] = _tune(rng, pairs=p > 0)
    return replace(data, rolls=rolls, split=np.zeros_like(data.split), place=np.zeros_like(data.place))


def test_a_style_s_plans_count_its_pieces_forms_and_reach_the_style_tables():
    data = _corpus(np.random.default_rng(1))
    plans = corpus_plans(data, 0, phrase_bars=4)
    assert plans[0] == {
        "sections": "AABB",
        "section_bars": 8,
        "phrase_bars": 4,
        "phrases": "aa",
        "weight": 0.75,
    }
    assert plans[1]["weight"] == 0.25 and plans[1]["phrases"] == ""
    tables = style_tables(data, corpus_forms=True)
    form = msgspec.convert(tables[0]["form"], FormSpec)
    assert form.plans[0] == FormPlan("AABB", 8, 4, "aa", 0.75)
    assert form.cadence_density == 0.7 and form.sections == "AAB"  # the chorale's table, plans added
    assert form.return_noise == CORPUS_RETURN_NOISE["chorale"]  # returns as close as the corpus's
    hand = style_tables(data, corpus_forms=False)[0]["form"]  # the chorale's hand-set plans, not its corpus's
    assert hand["plans"] == CHORALE_PLANS and hand["return_noise"] == CORPUS_RETURN_NOISE["chorale"]
    assert (
        corpus_plans(replace(data, rolls=data.rolls[:0], piece=data.piece[:0], style=data.style[:0]), 0) == []
    )
    assert corpus_plans(data, 1) == []  # random pieces: no form returns, no plans (the hand-set form plays)
    assert "plans" not in style_tables(data, corpus_forms=True)[1]["form"]


def test_a_style_table_with_plans_loads_and_a_bad_plan_says_which():
    table = {
        "name": "celtic",
        "label": "Celtic",
        "density": {"4/4": [1.0, 2.0, 3.0]},
        "register": [60.0, 66.0, 72.0],
        "polyphony": 1.0,
        "arrangement": {"programs": [0, 0, 32], "drums": "none", "swing": 0.0, "velocity": 80},
        "form": {"plans": [{"sections": "AB", "section_bars": 4, "phrase_bars": 2, "weight": 0.5}]},
    }
    style = parse_table(table, StyleInfo)
    assert style.form.plans == (FormPlan("AB", 4, 2, "", 0.5),) and style.form.sections == "AABB"
    table["form"]["plans"][0] |= {"section_bars": 5}
    with pytest.raises(ManifestError, match=r"plans\[0\]: phrase_bars 2 must divide section_bars 5") as bad:
        parse_table(table, StyleInfo)
    assert "\n" not in str(bad.value) and "$.form" in str(bad.value)


SPEC = FormSpec(
    "AABB",
    8,
    4,
    plans=(
        FormPlan("AAB", 4, 2, "aa", 0.5),
        FormPlan("ABAC", 8, 4, "", 0.3),
        FormPlan("AB", 8, 4, "aa", 0.2),
    ),
)


def _forms(spec: FormSpec, seed: int, bars: int) -> list[tuple[str, int, int]]:
    """(sections, position, place) of each planned bar from a fresh state of ``seed``."""
    state = GeneratorState.fresh(seed, 0, 2, (4, 8))
    out = []
    for _ in range(bars):
        state, bar = plan(state, Controls(), spec)
        assert bar.form is not None
        out.append((bar.form.sections, bar.position, bar.place))
        state = store(state.advanced(np.zeros((4, 8), np.float32)), bar, np.ones((4, 8), np.float32))
    return out


def test_each_tune_draws_its_form_by_the_seed_and_plays_it_through():
    first = _forms(SPEC, 5, 200)
    assert first == _forms(SPEC, 5, 200)  # the same seed plays the same forms
    drawn = {_forms(SPEC, seed, 1)[0][0] for seed in range(40)}
    assert drawn == {"AAB", "ABAC", "AB"}
    tunes, i = [], 0
    while i < len(first):  # walk tune by tune: each plays its whole form before the next draws
        sections = first[i][0]
        length = len(sections) * (4 if sections == "AAB" else 8)
        assert {s for s, _, _ in first[i : i + length]} == {sections}
        tunes.append(sections)
        i += length
    assert len(set(tunes)) > 1
    short = [(pos, place) for s, pos, place in first if s == "AAB"][:12]
    assert short == [(p % 4, p % 8) for p in range(12)]  # 4-bar sections: places 0-7 over two of them


def test_a_new_tune_by_the_listener_draws_again():
    state = GeneratorState.fresh(5, 0, 2, (4, 8))
    state, bar = plan(state, Controls(), SPEC)
    assert state.form >= 0
    assert renew(state).form == -1  # drawn at its first bar


def test_a_style_without_plans_plays_its_one_form():
    spec = FormSpec("AABA", 8, 4)
    assert {s for s, _, _ in _forms(spec, 3, 70)} == {"AABA"}
    assert spec.draw(3, 0) == -1 and spec.plan(-1) is spec


@pytest.fixture(scope="module")
def shipped():
    return Bundle.open(BUNDLE, precision="fp32")


def _styled(bundle, forms: list[FormSpec]):
    """``bundle`` with its styles' forms replaced by ``forms``."""
    styles = tuple(
        msgspec.structs.replace(s, form=f)
        for s, f in zip(bundle.manifest.controls.styles, forms, strict=True)
    )
    controls = msgspec.structs.replace(bundle.manifest.controls, styles=styles)
    other = copy.copy(bundle)
    other.manifest = msgspec.structs.replace(bundle.manifest, controls=controls)
    return other


def _digest(bundle, bars: int = 40) -> str:
    """sha256 of ``bars`` bars of every style (seed 7, a mood turn at bar 13) and their phrasing."""
    h = hashlib.sha256()
    for s in range(len(bundle.manifest.controls.styles)):
        gen = Generator(bundle, seed=7)
        for i in range(bars):
            bar = gen.next_bar(Controls(float(s), 100.0, 0.5 if i < 13 else -0.5))
            h.update(bar.roll.tobytes())
            h.update(repr(bar.phrase).encode())
    return h.hexdigest()


def test_a_plan_that_is_the_style_s_own_form_plays_it_bit_for_bit(shipped):
    forms = [s.form for s in shipped.manifest.controls.styles]
    own = [  # a style drawing plans (the quartet) keeps them
        f
        if f.plans
        else msgspec.structs.replace(
            f, plans=(FormPlan(f.sections, f.section_bars, f.phrase_bars, f.phrases, 1.0),)
        )
        for f in forms
    ]
    assert any(f.plans for f in forms) and not all(f.plans for f in forms)
    assert _digest(_styled(shipped, own), bars=24) == _digest(shipped, bars=24)
    other = [msgspec.structs.replace(f, plans=(FormPlan("AB", 4, 2, "aa", 1.0),)) for f in forms]
    assert _digest(_styled(shipped, other), bars=24) != _digest(shipped, bars=24)


def test_a_bundle_plays_its_styles_corpus_forms_when_asked(shipped):
    data = _corpus(np.random.default_rng(1))
    own = shipped.manifest.controls.styles[0].form
    played = with_forms(shipped, data, corpus_forms=True)
    chorale = played.manifest.controls.styles[0].form
    assert chorale.plans[0] == FormPlan("AABB", 8, 4, "aa", 0.75)
    assert shipped.manifest.controls.styles[0].form == own != chorale  # the bundle itself is left as it was
    gen = Generator(played, seed=2)
    gen.next_bar(Controls(0.0))
    drawn = chorale.plans[gen.get_state().form]
    assert gen.form(Controls(0.0)) is chorale and drawn in chorale.plans


def test_restyle_writes_the_forms_into_a_checkpoint_and_its_bundle_and_nothing_else(tmp_path, monkeypatch):
    import argparse
    import json
    import shutil

    from musicbox.commands import restyle
    from musicbox.errors import MusicBoxError
    from musicbox.runtime.digest import sha256_file
    from musicbox.runtime.manifest import load_manifest

    root = Path(__file__).resolve().parents[1] / "assets"
    checkpoint, bundle = tmp_path / "checkpoint", tmp_path / "bundle"
    shutil.copytree(root / "checkpoint", checkpoint)
    shutil.copytree(root / "bundle", bundle)
    weights = sha256_file(checkpoint / "model.safetensors")
    rng = np.random.default_rng(4)
    data = _corpus(rng)
    rolls = data.rolls.copy()
    for p in range(0, 20, 5):  # chorale pieces: AABA, B in the dominant
        a, b = _in_key(8, 0, rng), _in_key(8, 7, rng)
        rolls[p * 32 : (p + 1) * 32] = np.concatenate([a, a, b, a])
    monkeypatch.setattr("musicbox.model.data.load_dataset", lambda cache=None: replace(data, rolls=rolls))
    args = argparse.Namespace(checkpoint=checkpoint, forms="hand", bundle=bundle, cache=None)
    assert restyle.run(args) == 0
    written = json.loads((checkpoint / "config.json").read_text())["controls"]["styles"][0]["form"]
    played = load_manifest(bundle).controls.styles[0].form
    assert written["away"] == played.away == 1.0 and played.moves[0].semitones == 7
    assert played.sections == FORMS["chorale"]["sections"]  # the hand-set form, with its own plans
    assert played.plans == tuple(FormPlan(**p) for p in CHORALE_PLANS)
    assert sha256_file(checkpoint / "model.safetensors") == weights  # weights untouched
    before = json.loads((root / "bundle" / "manifest.json").read_text())
    after = json.loads((bundle / "manifest.json").read_text())
    for style in (before, after):
        for s in style["controls"]["styles"]:
            s.pop("form")
    assert after == before  # the manifest's forms alone changed
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    (other / "model.safetensors").write_bytes(b"not these weights")
    with pytest.raises(MusicBoxError, match="built from another checkpoint"):
        restyle.run(argparse.Namespace(checkpoint=other, forms="hand", bundle=bundle, cache=None))

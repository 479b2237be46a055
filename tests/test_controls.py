"""runtime/controls.py: the knob vocabulary's one blend rule, nearest style and energy, and that every
consumer that picks one style from a blend picks the same one, exact midpoints included."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import pytest

from musicbox.config import shipped_bundle
from musicbox.device.knobs import KnobMap
from musicbox.errors import ConfigError
from musicbox.runtime.arrangement import Arranger
from musicbox.runtime.bundle import Bundle
from musicbox.runtime.conditioning import conditioning_feeds, leading_style, style_weights
from musicbox.runtime.controls import (
    KNOBS,
    ControlRanges,
    Controls,
    energy,
    nearest_style,
    style_blend,
)
from musicbox.runtime.form import plan
from musicbox.runtime.generator import Generator
from musicbox.runtime.manifest import SamplerInfo, load_manifest
from musicbox.runtime.meter import METERS
from musicbox.runtime.state import GeneratorState
from tests.helpers.synthetic_bundle import build_bundle


def test_a_blend_is_the_two_neighbouring_detents_and_the_upper_s_weight():
    assert style_blend(2.3, 5) == pytest.approx((2, 3, 0.3))
    assert style_blend(2.0, 5) == (2, 3, 0.0)
    assert style_blend(4.0, 5) == (4, 4, 0.0)  # the last detent
    assert style_blend(-1.0, 5) == (0, 1, 0.0) and style_blend(9.0, 5) == (4, 4, 0.0)  # clipped
    assert style_blend(0.7, 1) == (0, 0, 0.0)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_the_nearest_style_is_the_larger_weight_and_the_upper_one_at_an_exact_midpoint(n):
    for k in range(n - 1):
        assert nearest_style(k + 0.5, n) == k + 1  # 50 % each: the style the knob came halfway to
        assert nearest_style(k + 0.49, n) == k and nearest_style(k + 0.51, n) == k + 1
        assert nearest_style(float(k), n) == k
        assert nearest_style(k + 0.5) == k + 1  # without the styles' count, the same for a checked value
    assert nearest_style(n - 1.0, n) == n - 1 and nearest_style(n + 3.0, n) == n - 1
    assert nearest_style(-2.0, n) == 0 and nearest_style(-2.0) == 0


def test_the_nearest_style_carries_the_larger_conditioning_weight():
    for s in (0.2, 0.5, 1.49, 1.5, 2.51, 3.5, 3.99, 4.0):
        w = style_weights(s, 5)[:-1]
        assert w[nearest_style(s, 5)] == w.max()


def test_energy_is_the_tempo_s_place_in_the_bundle_s_range_clipped():
    assert energy(60.0, 60.0, 160.0) == 0.0 and energy(160.0, 60.0, 160.0) == 1.0
    assert energy(110.0, 60.0, 160.0) == pytest.approx(0.5)
    assert energy(30.0, 60.0, 160.0) == 0.0 and energy(300.0, 60.0, 160.0) == 1.0


def test_ranges_apply_the_remote_s_fields_checked_and_name_a_wrong_one():
    ranges = ControlRanges(("chorale", "folk", "jig"), 60.0, 160.0, ("4/4", "3/4"))
    c = ranges.apply(Controls(), {"style": "jig", "tempo_bpm": 90, "mood": -0.5, "meter": "3/4"})
    assert c == Controls(style=2.0, tempo_bpm=90.0, mood=-0.5, meter="3/4")
    with pytest.raises(ConfigError, match=r"tempo_bpm: got 900; allowed: a number from 60 to 160"):
        ranges.apply(Controls(), {"tempo_bpm": 900})
    with pytest.raises(ConfigError, match=r"mood: got 2; allowed: a number from -1 to 1"):
        ranges.apply(Controls(), {"mood": 2})
    with pytest.raises(ConfigError, match=r"speed: not a control; allowed: style, tempo_bpm, mood"):
        ranges.apply(Controls(), {"speed": 1})
    with pytest.raises(ConfigError, match=r"meter: got '5/4'"):
        ranges.apply(Controls(), {"meter": "5/4"})
    assert [ranges.limits(k) for k in KNOBS] == [(0.0, 2.0), (60.0, 160.0), (-1.0, 1.0), (0.0, 1.0)]


@pytest.fixture(scope="module")
def shipped():
    return load_manifest(shipped_bundle())


def test_at_every_midpoint_the_tune_the_guidance_and_the_instruments_are_one_style(shipped):
    """Style knob 3.5 on the shipped bundle is folk 50 % + celtic 50 %: the tune is written as celtic (its
    form), style guidance leads with celtic (steering away from folk in 3/4), celtic's instruments and
    drums play and the meter key steps through celtic's meters. The same at every midpoint and near it."""
    table = shipped.controls
    arranger = Arranger.from_manifest(table)
    knobs = KnobMap(len(table.styles), style_meters=tuple(s.meters for s in table.styles))
    fresh = GeneratorState.fresh(0, 0, 2, (4, 8))
    for k in range(len(table.styles) - 1):
        for position, expected in ((k + 0.5, k + 1), (k + 0.49, k), (k + 0.51, k + 1)):
            controls = Controls(style=position, meter="3/4")
            style = table.styles[expected]
            tune, _ = plan(fresh, controls, style.form)
            assert tune.style == expected, position
            assert leading_style(controls, table) == style.name, position
            played = arranger.style_arrangement(position)
            assert (played.programs, played.drums) == (style.arrangement.programs, style.arrangement.drums)
            assert knobs.meters_of(position) == style.meters, position
    at = Controls(style=3.5, meter="3/4")
    sampler = shipped.sampler  # a distilled bundle: the guidance its one row was taught (sampler.folded)
    if sampler.folded is not None:
        folded = sampler.folded
        sampler = msgspec.structs.replace(
            sampler,
            meter_guidance=folded.meter_guidance,
            meter_contrast=folded.meter_contrast,
            style_guidance=folded.style_guidance,
            style_contrast=folded.style_contrast,
        )
    assert leading_style(at, table) == "celtic" and sampler.contrast_style("3/4", "celtic") == "folk"
    feeds = conditioning_feeds(at, table, sampler, shipped.representation.meters, meter=METERS["3/4"])
    names = [s.name for s in table.styles]
    assert feeds["style_w"][-1].tolist() == style_weights(names.index("folk"), len(names)).tolist()


def test_the_generator_writes_a_midpoint_as_the_upper_style_s_tune_meter_and_guidance(tmp_path):
    """Synthetic styles renaissance (4/4) and jig (6/8, steered away from chorale): at 3.5 the generator
    plays jig's meter, starts jig's tune and runs jig's contrast-style row; at 3.49 renaissance's."""
    sampler = SamplerInfo(
        "euler", 2, "flow", 1.0, 1.0, 0.5, style_guidance={"6/8": 2.0}, style_contrast={"jig": "chorale"}
    )
    bundle = Bundle.open(build_bundle(tmp_path, n_styles=5, sampler=sampler), precision="fp32")
    seen = []
    run = bundle.run_denoiser
    bundle.run_denoiser = lambda feeds: seen.append(feeds["style_w"].copy()) or run(feeds)
    gen = Generator(bundle, seed=1)
    bar = gen.next_bar(Controls(style=3.5))
    assert bar.meter.name == "6/8" and gen.get_state().style == 4
    assert all(len(rows) == 2 and rows[1].tolist() == [1, 0, 0, 0, 0, 0] for rows in seen)
    seen.clear()
    bar = gen.next_bar(replace(bar.controls, style=3.49))
    assert bar.meter.name == "4/4" and gen.get_state().style == 3
    assert all(len(rows) == 1 for rows in seen)

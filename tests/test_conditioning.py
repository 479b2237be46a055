"""runtime/conditioning.py: knobs -> style weights and attributes exactly as docs/architecture.md says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from musicbox.runtime.conditioning import (
    condition,
    conditioning_feeds,
    contrast_meter,
    normalize,
    raw_attributes,
    style_weights,
    unconditional,
)
from musicbox.runtime.controls import Controls
from musicbox.runtime.form import Shaping
from musicbox.runtime.manifest import SamplerInfo
from musicbox.runtime.meter import METERS
from tests.helpers.synthetic_bundle import controls_table

TABLE = controls_table(3)  # densities (4,8,14)+2i, registers (60,67,74)+i, polyphony 2+0.5i, gain 0.15


def test_detent_is_one_hot_and_between_detents_blends():
    assert style_weights(1.0, 3).tolist() == [0, 1, 0, 0]
    np.testing.assert_allclose(style_weights(1.3, 3), [0, 0.7, 0.3, 0], atol=1e-6)
    assert style_weights(-2.0, 3).tolist() == [1, 0, 0, 0]
    assert style_weights(9.0, 3).tolist() == [0, 0, 1, 0]


@given(st.floats(-10, 10), st.integers(1, 8))
def test_style_weights_are_a_blend_of_at_most_two_neighbours(style, n):
    w = style_weights(style, n)
    assert w.shape == (n + 1,) and w[-1] == 0
    assert abs(w.sum() - 1) < 1e-6 and (w >= 0).all()
    nz = np.nonzero(w)[0]
    assert len(nz) <= 2 and (len(nz) < 2 or nz[1] - nz[0] == 1)


def test_energy_picks_the_density_table_and_mood_scales_it():
    density = TABLE.styles[0].density["4/4"]
    assert raw_attributes(Controls(0, 60, 0), TABLE)[0] == pytest.approx(density[0])
    assert raw_attributes(Controls(0, 110, 0), TABLE)[0] == pytest.approx(density[1])
    assert raw_attributes(Controls(0, 200, 0), TABLE)[0] == pytest.approx(density[2])  # clipped
    assert raw_attributes(Controls(0, 110, 1), TABLE)[0] == pytest.approx(density[1] * 1.15)
    assert raw_attributes(Controls(0, 110, -1), TABLE)[0] == pytest.approx(density[1] * 0.85)


def test_the_density_is_the_meter_s():
    """A style asks for its own table of each meter it plays (a jig's bar holds fewer notes than a
    reel's); a meter it does not play takes its own meter's table scaled by the bar's length."""
    styles = list(TABLE.styles)
    styles[1] = replace(styles[1], meters=("4/4", "6/8"), density={"4/4": (4, 8, 13), "6/8": (4, 6, 6)})
    table = replace(TABLE, styles=tuple(styles))
    assert raw_attributes(Controls(1, 110, 0), table, meter=METERS["6/8"])[0] == pytest.approx(6.0)
    assert raw_attributes(Controls(1, 110, 0), table, meter=METERS["4/4"])[0] == pytest.approx(8.0)
    assert raw_attributes(Controls(1, 110, 0), table, meter=METERS["3/4"])[0] == pytest.approx(
        6.0
    )  # 8 * 12/16


def test_mood_sets_mode_and_register():
    dens, mode, reg, poly = raw_attributes(Controls(2, 100, -1), TABLE)
    assert mode == -1 and reg == pytest.approx(TABLE.styles[2].register[0])
    assert poly == pytest.approx(TABLE.styles[2].polyphony)
    _, mode, reg, _ = raw_attributes(Controls(2, 100, 0.5), TABLE)
    r = TABLE.styles[2].register
    assert mode == 0.5 and reg == pytest.approx((r[1] + r[2]) / 2)


def test_tables_blend_with_the_style_weights():
    a, b = raw_attributes(Controls(0, 100, 0.3), TABLE), raw_attributes(Controls(1, 100, 0.3), TABLE)
    mid = raw_attributes(Controls(0.25, 100, 0.3), TABLE)
    np.testing.assert_allclose(mid, 0.75 * a + 0.25 * b, rtol=1e-5)


def test_normalization_uses_the_manifest_table():
    raw = np.array([13.0, -1.0, 73.0, 3.5], np.float32)
    np.testing.assert_allclose(normalize(raw, TABLE), [1.0, -1.0, 1.0, 1.0])
    c = condition(Controls(1, 100, 0), TABLE)
    np.testing.assert_allclose(c.attrs, normalize(c.raw, TABLE))
    assert c.attr_mask.tolist() == [1, 1, 1, 1]


def test_a_bar_within_a_phrase_leaves_the_register_to_its_context():
    inside = Shaping(register=2.0, asks_register=False)
    c = condition(Controls(1, 100, 0.5), TABLE, inside)
    assert c.attr_mask.tolist() == [1, 1, 0, 1]  # density, mode, polyphony still asked
    np.testing.assert_array_equal(
        c.raw, condition(Controls(1, 100, 0.5), TABLE, inside._replace(asks_register=True)).raw
    )
    guided = SamplerInfo("euler", 8, "flow", 1.0, 2.0, 0.5, meter_guidance={"3/4": 2.0})
    feeds = conditioning_feeds(Controls(1, 100, 0.5), TABLE, guided, ("4/4", "3/4"), inside, METERS["3/4"])
    assert feeds["attr_mask"].tolist() == [[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1]]


def test_meter_guidance_steers_from_the_contrast_meter_named_else_from_meter_unknown():
    three = ("4/4", "3/4", "6/8")
    sampler = SamplerInfo("euler", 8, "flow", 1.0, 1.0, 0.5, {"3/4": 2.0, "6/8": 2.0}, {"6/8": "3/4"})
    assert contrast_meter(sampler, METERS["6/8"], three).tolist() == [0, 1, 0]
    assert contrast_meter(sampler, METERS["3/4"], three).tolist() == [0, 0, 0]
    feeds = conditioning_feeds(Controls(0.5, 100, 0), TABLE, sampler, three, meter=METERS["6/8"])
    assert feeds["meter"].tolist() == [[0, 0, 1], [0, 1, 0]]


def test_style_guidance_adds_the_contrast_styles_row_for_the_leading_style_in_its_meters():
    two = ("4/4", "3/4")
    sampler = SamplerInfo(
        "euler", 8, "flow", 1.0, 1.0, 0.5, style_guidance={"3/4": 3.0}, style_contrast={"folk": "quartet"}
    )
    feeds = conditioning_feeds(Controls(1.2, 100, 0), TABLE, sampler, two, meter=METERS["3/4"])  # led by folk
    assert feeds["style_w"][1].tolist() == [0, 0, 1, 0]  # quartet's row
    assert feeds["meter"].tolist() == [[0, 1], [0, 1]]
    for key in ("attrs", "attr_mask"):  # ...and otherwise the conditional row
        np.testing.assert_array_equal(feeds[key][1], feeds[key][0])
    assert sampler.row_guidance("3/4", "folk") == (3.0,) and sampler.max_batch == 2
    led_by_quartet = conditioning_feeds(Controls(1.7, 100, 0), TABLE, sampler, two, meter=METERS["3/4"])
    not_guided = conditioning_feeds(Controls(1.0, 100, 0), TABLE, sampler, two, meter=METERS["4/4"])
    assert led_by_quartet["style_w"].shape == not_guided["style_w"].shape == (1, 4)
    assert sampler.row_guidance("3/4", "quartet") == sampler.row_guidance("4/4", "folk") == ()


def test_feeds_batch_cond_and_uncond_rows():
    meters = ("4/4", "3/4", "6/8")
    guided = SamplerInfo("euler", 8, "flow", 1.0, 2.0, 0.5, meter_guidance={"6/8": 3.0})
    feeds = conditioning_feeds(Controls(0.5, 100, 0), TABLE, guided, meters, meter=METERS["6/8"])
    shapes = {k: v.shape for k, v in feeds.items()}
    assert shapes == {"style_w": (3, 4), "attrs": (3, 4), "attr_mask": (3, 4), "meter": (3, 3)}
    assert all(v.dtype == np.float32 for v in feeds.values())
    u = unconditional(TABLE)
    assert feeds["style_w"][1].tolist() == [0, 0, 0, 1] == u.style_w.tolist()
    assert feeds["attr_mask"][1].tolist() == [0, 0, 0, 0]
    assert feeds["meter"].tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]  # the last row: meter unknown
    for key in ("style_w", "attrs", "attr_mask"):  # ...and otherwise the conditional row
        np.testing.assert_array_equal(feeds[key][2], feeds[key][0])
    single = conditioning_feeds(
        Controls(0.5, 100, 0),
        TABLE,
        replace(guided, guidance=1.0, meter_guidance={}),
        meters,
        meter=METERS["6/8"],
    )
    assert single["style_w"].shape == (1, 4) and single["meter"].tolist() == [[0, 0, 1]]
    common = conditioning_feeds(Controls(0.5, 100, 0), TABLE, guided, meters)  # 4/4: not meter-guided
    assert common["meter"].tolist() == [[1, 0, 0], [1, 0, 0]]
    np.testing.assert_array_equal(single["attrs"][0], feeds["attrs"][0])

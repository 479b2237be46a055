"""MACs per bar counted from ONNX Runtime's profile: exact on the synthetic bundle's linear stages."""

from __future__ import annotations

import numpy as np

from musicbox.commands.bench import measure_macs
from musicbox.runtime.board_rates import BOARD_RATES
from musicbox.runtime.macs import node_macs
from musicbox.runtime.manifest import SamplerInfo
from tests.helpers.synthetic_bundle import PLANES, D, F, build_bundle


def test_node_macs_of_products_and_attention():
    assert node_macs("MatMul", [[2, 4, 64], [64, 192]], [[2, 4, 192]]) == 2 * 4 * 192 * 64
    assert (
        node_macs("DynamicQuantizeMatMul", [[1, 4, 64], [192], [192], [192]], [[1, 4, 192]]) == 4 * 192 * 64
    )
    assert node_macs("MultiHeadAttention", [[1, 13, 192]] * 3, [[1, 13, 192]]) == 2 * 13 * 13 * 192
    assert node_macs("LayerNormalization", [[1, 13, 192]], [[1, 13, 192]]) == 0


def test_macs_per_bar_are_exact_for_linear_encoder_and_decoder(tmp_path):
    figures = measure_macs(build_bundle(tmp_path), "fp32", bars=2, gmacs=2.0)
    per_call = int(np.prod(PLANES)) * F * D  # one [1, 6144] x [6144, 128] product, once per bar
    macs = figures["macs_per_bar"]
    assert macs["encoder"] == per_call and macs["decoder"] == per_call
    assert macs["denoiser"] > 0 and macs["total"] == macs["encoder"] + macs["decoder"] + macs["denoiser"]
    assert set(figures["estimates"]) == {*BOARD_RATES, "at 2 GMAC/s"}
    worst = figures["worst_bar"]
    assert figures["estimates"]["at 2 GMAC/s"]["bar_ms"] == [worst["macs"] / 2e9 * 1e3] * 2
    assert figures["this_machine"]["effective_gmacs"] > 0


def test_worst_bar_counts_every_guidance_row_and_boards_get_ranges(tmp_path):
    # 3/4 is meter-guided and its folk bars style-guided: three denoiser rows a call, the others one
    sampler = SamplerInfo(
        "euler",
        4,
        "flow",
        1.0,
        1.0,
        0.5,
        meter_guidance={"3/4": 2.0},
        style_guidance={"3/4": 2.0},
        style_contrast={"folk": "quartet"},
    )
    figures = measure_macs(build_bundle(tmp_path, sampler=sampler), "fp32", bars=2)
    by_meter, per_call = figures["worst_bar"]["by_meter"], int(np.prod(PLANES)) * F * D
    assert {m: (b["style"], b["rows"], b["denoiser_calls"]) for m, b in by_meter.items()} == {
        "4/4": ("chorale", 1, 4),
        "3/4": ("folk", 3, 4),
        "6/8": ("chorale", 1, 4),
    }
    one_row, three_rows = (by_meter[m]["macs"] - 2 * per_call for m in ("4/4", "3/4"))
    assert three_rows == 3 * one_row
    worst = figures["worst_bar"]
    assert (
        worst["meter"] == "3/4" and worst["tempo_bpm"] == 160.0 and worst["bar_seconds"] == 12 / 4 * 60 / 160
    )
    zero = figures["estimates"]["Pi Zero 2 W"]
    assert zero["bar_ms"] == [s * worst["macs"] / 1e9 * 1e3 for s in BOARD_RATES["Pi Zero 2 W"].s_per_gmac]
    assert zero["share"] == [ms / 1e3 / worst["bar_seconds"] for ms in zero["bar_ms"]]
    for name, e in figures["estimates"].items():
        assert 0 < e["bar_ms"][0] < e["bar_ms"][1], name


def test_int8_estimates_divide_by_the_int8_gain_range():
    pi5, pi4 = BOARD_RATES["Pi 5"], BOARD_RATES["Pi 4"]
    assert pi5.dotprod and not pi4.dotprod
    assert pi5.seconds(1e9, int8=True) == (0.08 / 3.0, 0.13 / 1.5)
    assert pi4.seconds(1e9, int8=True) == (0.26 / 1.3, 0.43 / 1.0)
    assert pi4.seconds(2e9, int8=False) == (0.52, 0.86)

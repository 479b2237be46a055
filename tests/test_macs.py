"""MACs per bar counted from ONNX Runtime's profile: exact on the synthetic bundle's linear stages."""

from __future__ import annotations

import numpy as np

from musicbox.commands.bench import BOARDS, measure_macs
from musicbox.runtime.macs import node_macs
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
    assert set(figures["estimates"]) == {*BOARDS, "at 2 GMAC/s"}
    assert figures["estimates"]["at 2 GMAC/s"]["bar_ms"] == macs["total"] / 2e9 * 1e3
    assert figures["this_machine"]["effective_gmacs"] > 0

"""musicbox/targets.py: one table of targets, as bench, soak and the reports read it."""

from __future__ import annotations

import pytest

from musicbox.targets import TARGETS, target, targets_of


def test_comparisons_and_their_text():
    rtf, speedup, copies = (
        target("generation_rtf_int8_p95"),
        target("int8_speedup_per_bar"),
        target("exact_copies"),
    )
    assert rtf.met(0.01) and not rtf.met(0.0101) and str(rtf) == "<= 0.01"
    assert speedup.met(2.0) and not speedup.met(1.99) and str(speedup) == ">= 2"
    assert copies.met(0) and not copies.met(1) and str(copies) == "== 0"


def test_names_are_unique_and_every_command_has_its_targets():
    names = [t.name for t in TARGETS]
    assert len(names) == len(set(names))
    assert {t.source for t in TARGETS} == {"bench", "soak", "soak_cpu", "eval", "quantize", "remote", "save"}
    assert [t.name for t in targets_of("soak")] == ["underruns", "rss_drift_mb"]
    with pytest.raises(KeyError, match="no target named 'speed'"):
        target("speed")


def test_the_reports_write_the_table_s_bounds():
    from musicbox.model.report import check

    assert check(0.69, "style_accuracy") == "FAIL (>= 0.7)"
    assert check(2.1, "markov_over_model_distance") == "pass (>= 2)"

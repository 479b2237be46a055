"""Every figure has one source: the status page and the README's table are what `musicbox report` makes
from the measurements' files, the README holds no other figure, and the figures the docs quote agree
with their files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from musicbox.commands.report import (
    PAGE,
    README_END,
    README_START,
    SOURCES,
    load_sources,
    lookup,
    readme_block,
    readme_with_block,
    status_page,
)

ROOT = Path(__file__).resolve().parent.parent

# (page, a pattern whose one group is a figure as the page writes it, source, JSON path in the source).
# A figure quoted in the docs that has a source is listed here, so that it changes with its source.
QUOTED = (
    ("docs/design.md", r"Its note F1 on validation bars is (\d\.\d+)", "train", "training.autoencoder_val_note_f1"),
    ("docs/design.md", r"from scratch, 12 min, note F1 (\d\.\d+)", "train", "training.autoencoder_val_note_f1"),
    ("docs/design.md", r"fresh denoiser of (\d+,\d+) bfloat16 steps", "train", "training.settings.dn_steps"),
    ("docs/design.md", r"\((\d,\d+) s over two sessions", "train", "training.wall_seconds"),
    ("docs/design.md", r"3/4\s+distance\s+ratio (\d\.\d+), mode \*\*", "eval", "meters.3/4.markov_over_model_distance"),
    ("docs/design.md", r"distance ratio \d\.\d+, mode \*\*(\d\.\d+)\*\*, style", "eval", "meters.3/4.mode_match"),
    ("docs/design.md", r"\*\*, style (\d\.\d+), told from", "eval", "meters.3/4.style_accuracy"),
    ("docs/design.md", r"told from 4/4 (\d\.\d+); 6/8\s+energy\s+r", "eval", "meters.3/4.told_from_common"),
    ("docs/design.md", r"6/8\s+energy\s+r (\d\.\d+); no copy", "eval", "meters.6/8.energy_density_correlation"),
    ("docs/design.md", r"64 bars on a quiet host: (\d\.\d+)\)", "bench", "results.generation_rtf_int8_p95.value"),
)  # fmt: skip


def test_the_status_page_and_the_readmes_table_are_made_from_their_sources():
    assert (ROOT / PAGE).read_text() == status_page(ROOT), "docs/status.md is stale: run `musicbox report`"
    readme = (ROOT / "README.md").read_text()
    assert readme_with_block(readme, readme_block(ROOT)) == readme, (
        "README's table is stale: `musicbox report`"
    )


def test_report_check_says_which_file_is_stale(tmp_path):
    """`musicbox report --check` on a copy whose bench figure moved: both outputs named, exit 1; after
    `musicbox report` the check passes and the new figure is on the page."""
    for rel in [*SOURCES.values(), PAGE, "README.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((ROOT / rel).read_bytes())
    bench = json.loads((tmp_path / SOURCES["bench"]).read_text())
    bench["results"]["peak_rss_mb"]["value"] = 149.6
    (tmp_path / SOURCES["bench"]).write_text(json.dumps(bench))
    cli = [sys.executable, "-m", "musicbox.cli", "report", "--root", str(tmp_path)]
    check = subprocess.run([*cli, "--check"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "docs/status.md: out of date" in check.stdout and "README.md: out of date" in check.stdout
    subprocess.run(cli, check=True, capture_output=True)
    assert subprocess.run([*cli, "--check"], capture_output=True).returncode == 0
    assert (
        "| peak RSS, generator + synth + SoundFont, MiB | 150 | <= 150 | yes |"
        in (tmp_path / PAGE).read_text()
    )


def test_a_missing_source_names_the_command_that_writes_it(tmp_path):
    from musicbox.errors import MusicBoxError

    with pytest.raises(MusicBoxError, match=r"reports/bench.json .*`musicbox bench`"):
        load_sources(tmp_path)


def test_the_readme_has_no_figure_but_the_generated_ones():
    """Outside its generated table and its code blocks, the README writes no decimal figure: a measured
    figure belongs on the status page."""
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(README_START), readme.index(README_END)
    prose = re.sub(r"```.*?```", "", readme[:start] + readme[end:], flags=re.S)
    figures = re.findall(r"(?<![\w.-])\d+\.\d+(?![\w.])|\d+ ?%", prose)
    assert not figures, f"README figures outside the generated table: {figures}"


def _written(text: str, pattern: str, page: str) -> list[str]:
    found = [m.replace(",", "") for m in re.findall(pattern, text)]  # 6,704 -> 6704
    assert found, f"{page} no longer quotes /{pattern}/: update QUOTED in tests/test_status.py"
    return found


@pytest.mark.parametrize("page, pattern, source, path", QUOTED, ids=[f"{q[0]}:{q[3]}" for q in QUOTED])
def test_a_figure_the_docs_quote_agrees_with_its_source(page, pattern, source, path):
    value = float(lookup(load_sources(ROOT), source, path))
    for written in _written((ROOT / page).read_text(), pattern, page):
        digits = len(written.partition(".")[2])
        assert float(written) == round(value, digits), (
            f"{page} writes {written}; {SOURCES[source]} {path}: {value}"
        )


def test_the_documented_checkpoint_keys_are_the_checkpoints():
    text = (ROOT / "docs/architecture.md").read_text()
    paragraph = text[text.index("`config.json` holds") : text.index("The torch model exposes")]
    documented = set(re.findall(r"`(\w+)`", paragraph))
    config = json.loads((ROOT / "assets/checkpoint/config.json").read_text())
    assert set(config) <= documented, f"undocumented keys: {sorted(set(config) - documented)}"
    assert set(config["controls"]) <= documented


def test_a_wrong_quote_fails(tmp_path):
    """The check above can fail: a design page quoting the autoencoder at 0.988 disagrees with 0.9846."""
    page, pattern, source, path = QUOTED[0]
    value = float(lookup(load_sources(ROOT), source, path))
    wrong = (
        (ROOT / page).read_text().replace(f"validation bars is {round(value, 3)}", "validation bars is 0.988")
    )
    assert [float(w) for w in _written(wrong, pattern, page)] != [round(value, 3)]

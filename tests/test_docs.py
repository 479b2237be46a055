"""The docs hold: their Python examples run against the shipped bundle, and they cite only files that
are in this repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS]
TOP = ("musicbox", "runtime", "device", "quantize", "model", "firmware_config", "tests", "scripts", "docs",
       "assets", "reports", ".ci")  # fmt: skip
FOLDERS = "|".join(map(re.escape, TOP))
REPO_PATH = re.compile(rf"`((?:{FOLDERS})/[\w./-]*|README\.md|CHANGELOG\.md|LICENSE|pyproject\.toml)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def python_blocks():
    """Every ```python block in docs/, as (page, code) with the code on its page's line numbers."""
    for page in DOCS:
        text = page.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            line = text[: match.start()].count("\n") + 2
            name = str(page.relative_to(ROOT))
            yield pytest.param(name, "\n" * (line - 1) + match.group(1), id=f"{name}:{line}")


@pytest.mark.parametrize("page, code", list(python_blocks()))
def test_documented_examples_run(page, code, monkeypatch):
    from musicbox.firmware import firmware_dir

    # The shipped defaults, not this machine's own musicbox.toml.
    monkeypatch.setenv("MUSICBOX_CONFIG", str(firmware_dir() / "musicbox.toml"))
    exec(compile(code, page, "exec"), {})


def test_the_runtime_api_is_documented_as_examples():
    ids = [p.id for p in python_blocks()]
    assert any(i.startswith("docs/architecture.md") for i in ids) and len(ids) >= 2


def test_docs_cite_only_files_in_the_repository():
    missing = []
    for page in PAGES:
        text = page.read_text()
        for path in REPO_PATH.findall(text):
            if not (ROOT / path).exists():
                missing.append(f"{page.name}: `{path}`")
        for target in LINK.findall(text):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.name}: ({target})")
    assert not missing, "cited but not in the repository: " + ", ".join(missing)


def test_nothing_points_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    outside = re.compile(r"[.][.]/shared|shared/[D]ESIGN|\b[D]ESIGN[.]md")  # [D]: this line is no hit
    hits = []
    for name in tracked.split():
        path = ROOT / name
        if path.suffix in (".py", ".md", ".toml", ".sh", ".service", ".yaml", ".txt", "") and path.is_file():
            text = path.read_text(errors="replace")
            hits += [f"{name}:{text[: m.start()].count(chr(10)) + 1}" for m in outside.finditer(text)]
    assert not hits, "points outside the repository: " + ", ".join(hits)

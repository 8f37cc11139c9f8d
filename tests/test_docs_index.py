"""The README stays a front page and docs/README.md indexes every page of docs/.

README.md has at most 250 lines; every docs/*.md is linked from docs/README.md; every relative link
in README.md and docs/ names a file (and a heading) that exists; the figures docs/performance.md and
the README quote are those of the committed bench results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
MAX_README_LINES = 250
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def links(markdown: str) -> list[str]:
    """The targets of the Markdown links outside code blocks."""
    return LINK.findall(FENCE.sub("", markdown))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {anchor(heading) for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", markdown), re.MULTILINE)}


def test_the_readme_is_a_front_page_of_at_most_250_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()

    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines: move a section to docs/"


def test_the_readme_links_the_docs_index() -> None:
    assert "docs/README.md" in links(README.read_text(encoding="utf-8"))


def test_the_index_links_every_page_of_docs() -> None:
    linked = {target.split("#")[0] for target in links(INDEX.read_text(encoding="utf-8"))}
    pages = {path.name for path in DOCS.glob("*.md")} - {INDEX.name}

    assert pages, "no pages in docs/"
    assert sorted(pages - linked) == [], "docs/README.md must link every page of docs/"


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for document in (README, *sorted(DOCS.glob("*.md"))):
        for target in links(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            destination = (document.parent / path).resolve() if path else document
            if not destination.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
            elif fragment and destination.suffix == ".md" and fragment not in anchors(destination.read_text("utf-8")):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")

    assert broken == []


def test_anchors_follow_github() -> None:
    assert anchor("Many functions: several stages, promotion, previews, matrices") == (
        "many-functions-several-stages-promotion-previews-matrices"
    )
    assert anchor("Pinning an exact version") == "pinning-an-exact-version"
    assert anchor("`drover.yml` keys") == "droveryml-keys"


def test_the_performance_page_quotes_the_committed_bench_table() -> None:
    table = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))["table"]
    page = (DOCS / "performance.md").read_text(encoding="utf-8")

    missing = [row for row in table.splitlines() if row.strip() and row not in page]

    assert missing == [], "docs/performance.md must quote bench/results.json's table as it is"


def test_the_readme_speed_figures_are_the_benchmarks() -> None:
    readme = README.read_text(encoding="utf-8")
    bench = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
    multi = json.loads((ROOT / "bench" / "multi_results.json").read_text(encoding="utf-8"))
    measured = {
        f"{bench['cold_package']['speedup']:.1f}x faster",
        *re.findall(r"\d+\.\d+x faster", bench["table"]),
        f"{multi['speedup_vs_baseline']:.1f}x faster",
    }

    quoted = set(re.findall(r"\d+(?:\.\d+)?x faster", readme))

    assert quoted, "the README quotes no speed figure"
    assert quoted <= measured, f"not in bench/results.json or bench/multi_results.json: {sorted(quoted - measured)}"

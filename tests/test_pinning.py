"""One way to pin the Action, the same in every document: the README, docs/action.md, examples/workflow.yml.

In production: the release's full commit SHA, or the prebuilt image by digest, each with the version as
a comment. To try it: the major tag `@v1`. Any other reference to the Action (a patch tag, an image
tag, a bare SHA without its version) in these documents fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README, ACTION_DOCS, WORKFLOW = ROOT / "README.md", ROOT / "docs" / "action.md", ROOT / "examples" / "workflow.yml"
PRODUCTION_SHA = "OWNER/drover-action@FULL_COMMIT_SHA # vX.Y.Z"
PRODUCTION_IMAGE = "docker://ghcr.io/OWNER/drover-action@sha256:IMAGE_DIGEST # vX.Y.Z"
TRYING = "OWNER/drover-action@v1"
GENERIC = "OWNER/drover-action@…"  # prose about any reference ("uses: OWNER/drover-action@… builds the image")
ALLOWED = {PRODUCTION_SHA, PRODUCTION_IMAGE, TRYING, GENERIC}
# A reference to the Action or its image; not a git URL (pip install git+https://github.com/OWNER/...) nor
# a plain image name for docker run (ghcr.io/OWNER/drover-action:vX.Y.Z), which are not `uses:` pins.
REFERENCE = re.compile(r"(?:docker://ghcr\.io/|(?<![/\w]))OWNER/drover-action[@:][^\s`'\"]*(?: # v[\w.]+)?")


def references(text: str) -> list[str]:
    return REFERENCE.findall(text)


def test_every_document_pins_the_action_one_of_the_three_ways() -> None:
    for document in (README, ACTION_DOCS, WORKFLOW):
        found = references(document.read_text(encoding="utf-8"))
        assert found, document
        assert set(found) <= ALLOWED, f"{document.relative_to(ROOT)}: {sorted(set(found) - ALLOWED)}"


def test_the_readme_and_the_action_docs_show_all_three() -> None:
    for document in (README, ACTION_DOCS):
        assert {PRODUCTION_SHA, PRODUCTION_IMAGE, TRYING} <= set(references(document.read_text(encoding="utf-8")))


def test_the_example_workflow_pins_the_full_commit_sha_and_names_the_others() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    steps = [step for job in yaml.safe_load(text)["jobs"].values() for step in job["steps"]]

    pins = [step["uses"] for step in steps if "drover-action" in step.get("uses", "")]

    assert pins == [PRODUCTION_SHA.split(" #")[0]]
    assert f"uses: {PRODUCTION_SHA} " in text  # with the version comment
    assert {PRODUCTION_IMAGE, TRYING} <= set(references(text))


def test_other_ways_to_pin_are_caught() -> None:
    text = """
        uses: OWNER/drover-action@v1.0.0
        uses: docker://ghcr.io/OWNER/drover-action:vX.Y.Z
        uses: OWNER/drover-action@FULL_COMMIT_SHA
        pip install "git+https://github.com/OWNER/drover-action@v1.0.0"
        docker run ghcr.io/OWNER/drover-action:vX.Y.Z
    """

    assert set(references(text)) - ALLOWED == {
        "OWNER/drover-action@v1.0.0",
        "docker://ghcr.io/OWNER/drover-action:vX.Y.Z",
        "OWNER/drover-action@FULL_COMMIT_SHA",
    }

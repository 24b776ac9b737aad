"""The docs' own examples, run as a user would paste them, so that the docs cannot drift from the code."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def run_python_blocks(page, section=None):
    """Execute the ```python blocks of ``docs/<page>`` (only those of its ``## <section>`` if given) in one
    namespace, and return it."""
    text = (DOCS / page).read_text()
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(block, namespace)  # noqa: S102 - the docs' own examples
    return namespace

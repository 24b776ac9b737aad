"""The README's own examples, run as a user would paste them, so that the docs cannot drift from the code."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def run_python_blocks(section):
    """Execute the ```python blocks of the README's ``## <section>`` in one namespace, and return it."""
    text = README.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(block, namespace)  # noqa: S102 - the README's own examples
    return namespace

"""The reference pages against the code: a setting, a system check, a command option, a metric family or a module
added without its entry (or removed with its entry left behind) fails here, naming it.

The pages are written by hand, since what each entry means is prose; these tests hold their names, defaults,
options and labels to what ``syncapp`` defines.
"""

import ast
import re
from pathlib import Path

import pytest
from django.core.management import BaseCommand, load_command_class

from syncapp import conf, metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNCAPP = REPO_ROOT / "syncapp"
REFERENCE = REPO_ROOT / "docs" / "reference"


def table_rows(page):
    """The cells of each row of the page's Markdown tables, header and rule rows left out."""
    rows = []
    for line in page.read_text().splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows.append(cells)
    return [row for row in rows if row[0] not in ("key", "id", "family", "argument", "module")]


def sections(page):
    """``{title: text}`` for each ``## `title` `` section of the page."""
    parts = re.split(r"^## `([^`]+)`\n", page.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_setting_is_listed_with_its_default():
    documented = {}
    for cells in table_rows(REFERENCE / "settings.md"):
        for key in re.findall(r"`([A-Z_]+)`", cells[0]):
            documented[key] = ast.literal_eval(cells[2].strip("`"))
    assert set(conf.DEFAULTS) - set(documented) == set(), "settings missing from docs/reference/settings.md"
    assert set(documented) - set(conf.DEFAULTS) == set(), "docs/reference/settings.md lists settings that are gone"
    wrong = {key: (documented[key], value) for key, value in conf.DEFAULTS.items() if documented[key] != value}
    assert wrong == {}, "documented default, real default"


def registered_check_ids():
    """Every ``id="syncapp.…"`` a check of the package can return."""
    ids = set()
    for source in SYNCAPP.rglob("*.py"):
        ids |= set(re.findall(r"""id=["'](syncapp\.[EW]\d{3})["']""", source.read_text()))
    return ids


def test_every_system_check_id_is_listed():
    documented = {cells[0].strip("`") for cells in table_rows(REFERENCE / "checks.md")}
    registered = registered_check_ids()
    assert registered, "no check ids found: the scan no longer matches syncapp/checks.py"
    assert registered - documented == set(), "check ids missing from docs/reference/checks.md"
    assert documented - registered == set(), "docs/reference/checks.md lists check ids no check returns"


def command_arguments(name):
    """``(required, allowed)``: the names the reference must list for the command's own arguments (each option's
    longest string, each positional's metavar), and every name it may list for them (short options too)."""
    common = {action.dest for action in BaseCommand().create_parser("manage.py", name)._actions}
    parser = load_command_class("syncapp", name).create_parser("manage.py", name)
    required, allowed = set(), set()
    for action in parser._actions:
        if action.dest in common:
            continue
        names = action.option_strings or [action.metavar or action.dest]
        required.add(max(names, key=len))
        allowed.update(names)
    return required, allowed


def argument_names(section):
    """The names a command's section lists in its argument table (``--store TABLE=STORE_ID`` lists ``--store``)."""
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.strip("|").split(" | ")[0]
            names |= {re.split(r"[ =]", entry)[0] for entry in re.findall(r"`([^`]+)`", first_cell)}
    return names


COMMANDS = sorted(path.stem for path in (SYNCAPP / "management" / "commands").glob("livesync_*.py"))


def test_every_command_has_a_section():
    documented = set(sections(REFERENCE / "commands.md"))
    assert set(COMMANDS) - documented == set(), "commands missing from docs/reference/commands.md"
    assert documented - set(COMMANDS) == set(), "docs/reference/commands.md lists commands that are gone"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_argument_of_a_command_is_listed(name):
    listed = argument_names(sections(REFERENCE / "commands.md").get(name, ""))
    required, allowed = command_arguments(name)
    assert required - listed == set(), f"arguments of {name} missing from its section"
    assert listed - allowed == set(), f"the section of {name} lists arguments it does not take"


def metric_families():
    """``{name as scraped: (type, label names)}`` of the families ``syncapp.metrics`` defines."""
    from prometheus_client.metrics import MetricWrapperBase

    families = {}
    for family in vars(metrics).values():
        if isinstance(family, MetricWrapperBase):
            name = family._name + ("_total" if family._type == "counter" else "")
            families[name] = (family._type, tuple(family._labelnames))
    return families


def test_every_metric_family_is_listed_with_its_type_and_labels():
    documented = {
        cells[0].strip("`"): (cells[1], tuple(re.findall(r"`([a-z_]+)`", cells[2])))
        for cells in table_rows(REFERENCE / "metrics.md")
    }
    defined = metric_families()
    assert len(defined) >= 10, "the families were not made (LIVESYNC['METRICS'] off, or prometheus-client missing)"
    assert set(defined) - set(documented) == set(), "metric families missing from docs/reference/metrics.md"
    assert set(documented) - set(defined) == set(), "docs/reference/metrics.md lists families that are gone"
    wrong = {name: (documented[name], defined[name]) for name in defined if documented[name] != defined[name]}
    assert wrong == {}, "documented (type, labels), defined (type, labels)"


def test_the_architecture_names_every_module():
    page = REPO_ROOT / "docs" / "topics" / "architecture.md"
    named = set()
    for cells in table_rows(page):
        for entry in re.findall(r"`([^`]+)`", cells[0]):
            named.add(entry.removeprefix("syncapp/"))
    modules = {
        str(path.relative_to(SYNCAPP))
        for path in SYNCAPP.rglob("*.py")
        if path.name != "__init__.py" and "migrations" not in path.parts
    }
    packages = {entry for entry in named if entry.endswith("/")}  # `syncapp/management/` covers what is in it
    covered = {module for module in modules if module in named or module.startswith(tuple(packages))}
    assert modules - covered == set(), "modules missing from the table of docs/topics/architecture.md"
    assert named - packages - modules == set(), "the table of docs/topics/architecture.md names modules that are gone"

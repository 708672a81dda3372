"""The documentation a user copies from stays true: the generated contract and the README's paths."""

import re

from carebus_local.template import PROJECT_ROOT
from carebus_tooling.contract import stale


def test_the_published_contract_is_what_generation_from_the_domain_models_produces():
    assert stale() == [], "the request contract is stale: run `make contract`"


def test_every_path_the_readme_names_exists():
    readme = (PROJECT_ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:events|docs|functions|src|local|tests)/[\w./<>-]*)`", readme))
    missing = [path for path in sorted(named) if "<" not in path and not (PROJECT_ROOT / path).exists()]
    assert named
    assert missing == []


def test_every_make_target_the_readme_names_exists():
    readme = (PROJECT_ROOT / "README.md").read_text()
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"`make ([a-z0-9-]+)`", readme))
    assert named
    assert named <= targets


def test_every_sample_event_is_run_by_some_test():
    events_dir = PROJECT_ROOT / "events"
    test_sources = "\n".join(path.read_text() for path in (PROJECT_ROOT / "tests").rglob("test_*.py"))
    samples = sorted(str(path.relative_to(events_dir)) for path in events_dir.rglob("*.json"))
    assert samples
    assert [sample for sample in samples if f'"{sample}"' not in test_sources] == []

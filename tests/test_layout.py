"""The test tree's import rule (issue #10): a test imports from its own folder, from
`tests.support` and from `tests.fakes`, never another folder's modules, a conftest or a test
module; `bench/` imports only `tests.support` and `tests.fakes`."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("tests.support", "tests.fakes")


def imported_modules(relative: Path, source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at `relative` (to the project
    root), relative imports resolved."""
    package = ".".join(relative.with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(source, str(relative))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if alias.name in ("conftest",) or alias.name.startswith("test_")]
    return found


def breaks(relative: Path, source: str) -> list[str]:
    own = ".".join(relative.with_suffix("").parts[:-1])
    problems = []
    for line, module in imported_modules(relative, source):
        parts = module.split(".")
        if parts[0] != "tests":
            continue
        where = f"{relative}:{line} imports {module}"
        if parts[-1] == "conftest" or parts[-1].startswith("test_"):
            problems.append(f"{where}: a conftest or test module is never imported; move what is shared "
                            "to tests/support/")
        elif module.startswith(SHARED):
            continue
        elif relative.parts[0] == "bench" or not (module == own or module.startswith(own + ".")) or own == "tests":
            problems.append(f"{where}: only tests.support and tests.fakes are shared across folders; move it "
                            "to tests/support/")
    return problems


def sources() -> list[Path]:
    return sorted(p for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize(("where", "source", "allowed"), [
    ("tests/http/test_a.py", "from tests.support.prepare import REP", True),
    ("tests/http/test_a.py", "from tests.fakes.gmail_server import FakeGmail", True),
    ("tests/contract/test_a.py", "from .harness import ProviderRecord", True),
    ("tests/contract/harness_x.py", "from tests.contract.harness import ProviderRecord", True),
    ("tests/http/test_a.py", "from tests.prepare.support import REP", False),
    ("tests/http/test_a.py", "import tests.slack.helpers", False),
    ("tests/slack/test_a.py", "from tests.slack.conftest import text_of", False),
    ("tests/slack/test_a.py", "from .conftest import text_of", False),
    ("tests/slack/test_a.py", "from tests.slack.test_tasks import folder", False),
    ("tests/slack/test_a.py", "from . import test_tasks", False),
    ("tests/worker/test_a.py", "from tests.conftest import PG_DSN", False),
    ("tests/worker/test_a.py", "from ..prepare.support import REP", False),
    ("bench/x.py", "from tests.support.cluster import Cluster", True),
    ("bench/x.py", "from tests.fakes.slack_server import FakeSlack", True),
    ("bench/x.py", "from tests.worker.cluster import Cluster", False),
    ("tests/http/test_a.py", "from cadence.http import create_http_app", True),
])
def test_the_rule(where, source, allowed):
    assert (breaks(Path(where), source) == []) is allowed


@pytest.mark.parametrize("folder", ["tests", "bench"])
def test_no_test_imports_another_folder_a_conftest_or_a_test_module(folder):
    files = [path for path in sources() if path.relative_to(ROOT).parts[0] == folder]
    assert len(files) > (50 if folder == "tests" else 3)
    problems = [problem for path in files
                for problem in breaks(path.relative_to(ROOT), path.read_text(encoding="utf-8"))]
    assert problems == []

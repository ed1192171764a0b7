"""The layer rules of docs/DESIGN.md, as import-linter checks them from pyproject.toml."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the test dependencies"
    done = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout


def test_no_function_level_imports_of_our_own_packages() -> None:
    """Imports of ivfarm, drivers, vrouter, contextualization or fileops sit at module level, where the linter sees them."""
    offenders = []
    for package in ("ivfarm", "drivers", "vrouter", "contextualization", "fileops"):
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.lstrip()
                if line != stripped and stripped.startswith(("from ivfarm", "import ivfarm", "from drivers",
                                                             "from vrouter", "from contextualization",
                                                             "from fileops")):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []

"""The map in docs/architecture.md holds: imports go one way, with no circles.

`lint-imports` checks the contracts in pyproject.toml (rooms import downwards only; the client
knows nothing of the sweep; its core needs no Prefect). Within a room, no two modules may reach
each other, lazily or not: a circle is found on grimp's graph, which import-linter builds on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    done = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_reaches_back_to_a_module_that_imports_it() -> None:
    graph = grimp.build_graph(
        "flows", "wiro_tasks", include_external_packages=False, exclude_type_checking_imports=True
    )
    circles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.startswith(f"{imported}.") or imported.startswith(f"{importer}."):
                continue  # a package and its own modules (`from . import X`)
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                circles.append(" -> ".join([importer, *back]))
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_map_names_every_room() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms = sorted(p.name for p in (ROOT / "flows").iterdir() if (p / "__init__.py").is_file())
    missing = [room for room in rooms if f"flows/{room}/" not in text]
    assert not missing, f"docs/architecture.md does not describe flows/{missing}"

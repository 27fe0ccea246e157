"""Names and keys a sweep gives its Prefect flow runs and artifacts (pure functions)."""

from __future__ import annotations

import re
from pathlib import Path

from flows.orchestrate.artifacts import artifact_scope, run_name


def test_a_run_is_named_after_its_out_folder_grid_and_rows() -> None:
    assert run_name(Path("/srv/demo-out"), ["prompts/demo.csv"], rows=20) == "demo-out · demo.csv · 20 rows"
    assert run_name(Path("/srv/runs/nightly-2026-11-30"), ["prompts/nightly.csv"], rows=1) == (
        "nightly-2026-11-30 · nightly.csv · 1 row"
    )
    assert run_name(Path("/srv/out"), ["a.csv", "b.csv", "c.csv", "d.csv"]) == "out · a.csv + b.csv +2"
    assert run_name(Path("/srv/out"), ["prompts/"], shards=4, rows=40) == "out · prompts · 4 shards · 40 rows"
    assert run_name(Path("/srv/out"), ["x.csv"], shard=1, shards=4, rows=10) == "out · shards/1 of 4 · 10 rows", (
        "numbered as its folder, OUT/shards/1"
    )


def test_artifact_keys_are_scoped_per_out_readable_and_valid_for_prefect(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a" / "Demo Out"), str(tmp_path / "b" / "Demo Out")
    assert artifact_scope(a) != artifact_scope(b), "two OUTs with one name keep two keys"
    assert artifact_scope(a) == artifact_scope(a + "/"), "stable"
    assert artifact_scope(a) == "a-demo-out", "the OUT's folder and its parent's, no hash"
    assert artifact_scope("runs/nightly-{date}") == "runs-nightly", "a scheduled OUT keeps one key across nights"
    assert artifact_scope("runs/adhoc-{date}-{run}") == "runs-adhoc"
    for scope in (artifact_scope(a), artifact_scope("///"), artifact_scope("Ünïcode ☃")):
        assert re.fullmatch(r"[a-z0-9-]+", f"{scope}-summary"), scope

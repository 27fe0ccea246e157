"""OUT keeps its expanded grid (`flows.store.gridcache`): a rerun reads it back rather than expand
it again (2.5 s of a 100,000-row reopen), and only when nothing it was made from has changed."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import flows.grid
import flows.store.gridcache
from flows.grid import DEFAULT_MAX_COMBINATIONS, load_grid
from flows.store.gridcache import GRID_CACHE, keep_grid, kept_grid
from tests.images import landscape, write

MOST = DEFAULT_MAX_COMBINATIONS


@pytest.fixture
def expansions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many rows each expansion made, as it made them."""
    made: list[int] = []
    expand = flows.grid.expand_grid

    def counted(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = expand(*args, **kwargs)
        made.append(len(frame))
        return frame

    monkeypatch.setattr(flows.grid, "expand_grid", counted)
    yield made


def grid_file(path: Path, prompts: int = 3) -> Path:
    lines = ["prompt,seed,negativePrompt"] + [f"a fox number {n},{n},blurry" for n in range(prompts)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_rerun_reads_the_grid_its_out_keeps_and_gets_the_same_frame(tmp_path: Path, expansions: list[int]) -> None:
    grid, out = [str(grid_file(tmp_path / "g.csv"))], tmp_path / "out"
    out.mkdir()
    axes = {"seed": ["1", "2"]}
    first = kept_grid(out, grid, axes, max_combinations=MOST)
    assert expansions == [6], "nothing kept yet: expanded"
    assert keep_grid(out, first, grid, axes, max_combinations=MOST)
    again = kept_grid(out, grid, axes, max_combinations=MOST)
    assert expansions == [6], "read back, not expanded"
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert again.dtypes.equals(first.dtypes)
    assert keep_grid(out, again, grid, axes, max_combinations=MOST)


@pytest.mark.parametrize("change", ["a cell", "a file's name", "the axes", "the model", "the limit", "the code"])
def test_anything_the_grid_was_made_from_changed_expands_it_again(
    tmp_path: Path, expansions: list[int], monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()
    keep_grid(out, load_grid([str(path)]), [str(path)], max_combinations=MOST)
    expansions.clear()
    grid, axes, model, most = [str(path)], None, None, MOST
    if change == "a cell":
        path.write_text(path.read_text().replace("number 2", "number 9"))
    elif change == "a file's name":
        grid = [str(path.rename(tmp_path / "h.csv"))]
    elif change == "the axes":
        axes = {"seed": ["1"]}
    elif change == "the model":
        model = "text-to-video"
    elif change == "the limit":
        most = 10
    else:
        monkeypatch.setattr(flows.store.gridcache, "code_digest", lambda: b"another version")
    frame = kept_grid(out, grid, axes, model=flows.grid.model_name(model), max_combinations=most)
    assert expansions == [len(frame)], f"{change} changed: expanded again"
    pd.testing.assert_frame_equal(frame, load_grid(grid, axes, model=flows.grid.model_name(model)))


@pytest.mark.parametrize("damage", ["a flipped byte", "cut short", "empty", "another file's seal", "a directory"])
def test_a_damaged_cache_is_expanded_again_never_trusted_or_fatal(
    tmp_path: Path, expansions: list[int], damage: str
) -> None:
    path, out = grid_file(tmp_path / "g.csv", prompts=50), tmp_path / "out"
    out.mkdir()
    grid, cache = [str(path)], out / GRID_CACHE
    expected = load_grid(grid)
    keep_grid(out, expected, grid, max_combinations=MOST)
    data = cache.read_bytes()
    if damage == "a flipped byte":
        middle = len(data) // 2
        cache.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    elif damage == "cut short":
        cache.write_bytes(data[:-100])
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "another file's seal":
        other = grid_file(tmp_path / "other.csv", prompts=2)
        keep_grid(tmp_path, load_grid([str(other)]), [str(other)], max_combinations=MOST)
        cache.write_bytes((tmp_path / GRID_CACHE).read_bytes())
    else:
        cache.unlink()
        cache.mkdir()
    expansions.clear()
    frame = kept_grid(out, grid, max_combinations=MOST)
    assert expansions == [50], "expanded again"
    pd.testing.assert_frame_equal(frame, expected)


def test_a_grid_with_local_start_images_is_not_kept(tmp_path: Path) -> None:
    """An image's bytes name its rows, and the key reads only the grid files."""
    image = write(tmp_path / "start.png", landscape(), "PNG")
    path, out = tmp_path / "g.csv", tmp_path / "out"
    path.write_text(f"prompt,inputImage\na fox,{image}\n")
    out.mkdir()
    frame = load_grid([str(path)])
    assert not keep_grid(out, frame, [str(path)], max_combinations=MOST)
    assert not keep_grid(out, frame, [str(path)], {"inputImage": [str(image)]}, max_combinations=MOST)
    assert not (out / GRID_CACHE).exists()


def test_a_full_disk_keeps_no_cache_and_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(flows.store.gridcache, "atomic_write", full)
    assert not keep_grid(out, load_grid([str(path)]), [str(path)], max_combinations=MOST)
    assert "could not keep the expanded grid" in caplog.text
    assert list(out.iterdir()) == []


def test_a_frame_that_would_not_come_back_as_it_was_is_not_kept(tmp_path: Path) -> None:
    """Kept only if Arrow gives back every cell with its type: an int among strings would come
    back otherwise (or not at all), and a row's inputs with it."""
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()
    frame = load_grid([str(path)])
    odd = frame.assign(inputImageUrl=pd.Series([None, 7, "x"], dtype=object))
    assert not keep_grid(out, odd, [str(path)], max_combinations=MOST)
    assert not (out / GRID_CACHE).exists()

"""OUT keeps its expanded grid (`flows.store.gridcache`): a rerun reads it back rather than expand
it again (2.5 s of a 100,000-row reopen), and only when nothing it was made from has changed."""

from __future__ import annotations

import errno
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
def expansions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each expansion made, as it made them."""
    made: list[int] = []
    expand = flows.grid.expand_grid

    def counted(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = expand(*args, **kwargs)
        made.append(len(frame))
        return frame

    monkeypatch.setattr(flows.grid, "expand_grid", counted)
    return made


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
    assert keep_grid(out, first)
    again = kept_grid(out, grid, axes, max_combinations=MOST)
    assert expansions == [6], "read back, not expanded"
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert again.dtypes.equals(first.dtypes)
    assert keep_grid(out, again)


@pytest.mark.parametrize("change", ["a cell", "a file's name", "the axes", "the model", "the limit", "the code"])
def test_anything_the_grid_was_made_from_changed_expands_it_again(
    tmp_path: Path, expansions: list[int], monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()
    assert keep_grid(out, kept_grid(out, [str(path)], max_combinations=MOST))
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
    assert keep_grid(out, kept_grid(out, grid, max_combinations=MOST))
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
        assert keep_grid(tmp_path, kept_grid(tmp_path, [str(other)], max_combinations=MOST))
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
    assert not keep_grid(out, kept_grid(out, [str(path)], max_combinations=MOST))
    other = grid_file(tmp_path / "g2.csv")
    assert not keep_grid(out, kept_grid(out, [str(other)], {"inputImage": [str(image)]}, max_combinations=MOST))
    assert not (out / GRID_CACHE).exists()


def test_a_full_disk_keeps_no_cache_and_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(flows.store.gridcache, "atomic_write", full)
    assert not keep_grid(out, kept_grid(out, [str(path)], max_combinations=MOST))
    assert "could not keep the expanded grid" in caplog.text
    assert list(out.iterdir()) == []


def test_a_frame_that_would_not_come_back_as_it_was_is_not_kept(tmp_path: Path) -> None:
    """Kept only if Arrow gives back every cell with its type: an int among strings would come
    back otherwise (or not at all), and a row's inputs with it."""
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()
    frame = kept_grid(out, [str(path)], max_combinations=MOST)
    odd = frame.assign(inputImageUrl=pd.Series([None, 7, "x"], dtype=object))
    assert not keep_grid(out, odd)
    assert not (out / GRID_CACHE).exists()


def test_a_grid_saved_after_it_was_read_keeps_the_rows_it_was_read_with(tmp_path: Path) -> None:
    """The frame keeps the key its files had when they were read: a grid saved between the read
    and the keep (a flow's checks, Prefect's start) is another key, and its run reads it anew."""
    path, out = tmp_path / "g.csv", tmp_path / "out"
    path.write_text("prompt,seed\na fox to be removed,1\na cat,2\n")
    frame = kept_grid(out, [str(path)], max_combinations=MOST)
    path.write_text("prompt,seed\na cat,2\na dog,3\n")
    assert keep_grid(out, frame), "first run's OUT made, its grid kept"
    again = kept_grid(out, [str(path)], max_combinations=MOST)
    pd.testing.assert_frame_equal(again, load_grid([str(path)]))
    assert sorted(again["prompt"]) == ["a cat", "a dog"]


def test_a_grid_saved_while_it_is_read_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expansions: list[int]
) -> None:
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    read = flows.grid.load_grid

    def saved_meanwhile(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = read(*args, **kwargs)
        path.write_text(path.read_text().replace("number 1", "number 7"))
        return frame

    monkeypatch.setattr(flows.store.gridcache, "load_grid", saved_meanwhile)
    assert not keep_grid(out, kept_grid(out, [str(path)], max_combinations=MOST))
    assert not (out / GRID_CACHE).exists()


def test_a_part_of_the_grid_is_not_kept_as_the_grid(tmp_path: Path) -> None:
    """A frame's `attrs` follow its copies and slices: a shard's rows must not stand for the grid."""
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    frame = kept_grid(out, [str(path)], max_combinations=MOST)
    assert not keep_grid(out, frame.iloc[:2])
    assert not (out / GRID_CACHE).exists()


def test_grid_files_gone_since_they_were_read_stop_nothing(tmp_path: Path) -> None:
    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    frame = kept_grid(out, [str(path)], max_combinations=MOST)
    path.unlink()
    assert keep_grid(out, frame), "kept from what was read"


@pytest.mark.parametrize("edit", ["text where numbers go", "ids that are not ids", "pandas metadata"])
def test_a_sealed_file_that_is_no_grid_is_expanded_again_never_a_crash(
    tmp_path: Path, expansions: list[int], edit: str
) -> None:
    """Sealed with the right key (by hand, or another tool), yet not what an expansion makes."""
    import pyarrow as pa
    import pyarrow.feather as feather

    from flows.store.gridcache import _seal, grid_key

    path, out = grid_file(tmp_path / "g.csv"), tmp_path / "out"
    out.mkdir()
    real = load_grid([str(path)])
    if edit == "text where numbers go":
        table = pa.Table.from_pandas(real.assign(numFrames=real["numFrames"].astype(str) + "x"), preserve_index=False)
    elif edit == "ids that are not ids":
        table = pa.Table.from_pandas(real.assign(row_id="same"), preserve_index=False)
    else:
        table = pa.Table.from_pandas(real, preserve_index=False).replace_schema_metadata({b"pandas": b'{"columns": 5}'})
    sink = pa.BufferOutputStream()
    feather.write_feather(table, sink, compression="uncompressed")
    data = sink.getvalue().to_pybytes()
    key = grid_key([str(path)], None, None, MOST)
    assert key is not None
    (out / GRID_CACHE).write_bytes(data + _seal(key, data))
    expansions.clear()
    pd.testing.assert_frame_equal(kept_grid(out, [str(path)], max_combinations=MOST), real)
    assert expansions == [3]

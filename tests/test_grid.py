"""Grid reading and expansion: tiny frames and files, every rule with a clear message."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.grid import GridError, expand_grid, grid_files, load_grid, parse_axes, read_grid_file, row_id


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    raw = pd.DataFrame(list(rows), dtype=object)
    raw["source"] = [f"g.csv:{n}" for n in range(1, len(raw) + 1)]
    return raw


def test_defaults_fill_missing_columns_and_ids_are_stable() -> None:
    grid = expand_grid(frame({"prompt": "a fox"}))
    [row] = grid.to_dict("records")
    assert row["numFrames"] == 121
    assert row["size"] == "832*480"
    assert row["seed"] == "42"
    assert row["row_id"] == row_id(
        "Wan-AI/Wan2.2-TI2V-5B-text-to-video",
        {"prompt": "a fox", "negativePrompt": row["negativePrompt"], "size": "832*480", "numFrames": 121,
         "scale": 5.0, "steps": 25, "fps": 16, "seed": "42"},
    )  # fmt: skip


@pytest.mark.parametrize(
    "inputs",
    [
        {"prompt": "a fox", "numFrames": 121, "scale": 5.0, "seed": "42"},
        {"prompt": '雪の中の狐 🦊 \u2028 "quoted" \\ tab\t', "scale": 0.0, "steps": 10**18},
        {"prompt": "x", "scale": 1e-07, "fps": 16, "z": 12345678901234567890.5, "w": None, "v": True},
    ],
)
def test_a_row_id_is_the_hash_of_json_dumps_of_its_model_and_inputs(inputs: dict[str, Any]) -> None:
    """Every OUT names its rows by these bytes: another spelling of the same JSON (a faster
    encoder, ASCII or not, another float format) would name them anew, and pay for them again."""
    text = json.dumps({"model": "m", "inputs": inputs}, sort_keys=True, separators=(",", ":"))
    assert row_id("m", inputs) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_ids_follow_the_inputs_not_the_position() -> None:
    one = expand_grid(frame({"prompt": "a"}, {"prompt": "b"}))
    two = expand_grid(frame({"prompt": "b"}, {"prompt": "a"}))
    assert set(one["row_id"]) == set(two["row_id"])
    assert dict(zip(one["prompt"], one["row_id"], strict=True)) == dict(zip(two["prompt"], two["row_id"], strict=True))


def test_explicit_defaults_and_string_numbers_give_the_same_id() -> None:
    plain = expand_grid(frame({"prompt": "a"}))
    spelled = expand_grid(frame({"prompt": "a", "numFrames": "121", "scale": "5", "seed": 42}))
    assert plain["row_id"].tolist() == spelled["row_id"].tolist()


def test_axes_make_a_cartesian_product_over_every_row() -> None:
    grid = expand_grid(
        frame({"prompt": "a", "seed": "9"}, {"prompt": "b"}), {"seed": ["1", "2"], "steps": ["10", "20"]}
    )
    assert len(grid) == 8
    assert set(grid["seed"]) == {"1", "2"}, "an axis replaces the column"
    assert sorted(grid["steps"].unique().tolist()) == [10, 20]


def test_list_cells_expand_and_identical_combinations_collapse() -> None:
    grid = expand_grid(frame({"prompt": "a", "seed": ["1", "2", "1"]}, {"prompt": "a", "seed": "2"}))
    assert len(grid) == 2
    two = grid[grid["seed"] == "2"].iloc[0]
    assert two["source"] == "g.csv:1 g.csv:2"


def test_a_bad_value_names_file_row_and_field() -> None:
    with pytest.raises(GridError) as caught:
        expand_grid(frame({"prompt": "a"}, {"prompt": "b", "numFrames": "80"}))
    assert str(caught.value) == "g.csv, row 2, field numFrames: must be 4n+1 (5, 9, ..., 81, ..., 121, ...) (got '80')"
    assert caught.value.exit_code == 2


def test_grid_size_is_checked_before_expanding() -> None:
    many = [str(n) for n in range(1000)]
    with pytest.raises(GridError, match="expands to 1,000,000 combinations"):
        expand_grid(frame({"prompt": "a"}), {"seed": many, "steps": many}, max_combinations=10_000)


def test_csv_files_and_directories(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", 'prompt,seed\n"one, with comma",1\n\n"two\nlines",2\n')
    write(tmp_path, "notes.txt", "ignored")
    pq.write_table(pa.table({"prompt": ["three"], "seed": [[3, 4]]}), tmp_path / "b.parquet")
    assert [p.name for p in grid_files([tmp_path])] == ["a.csv", "b.parquet"]
    grid = load_grid([tmp_path])
    assert sorted(grid["prompt"]) == ["one, with comma", "three", "three", "two\nlines"]
    assert sorted(grid["seed"]) == ["1", "2", "3", "4"]
    assert grid.loc[grid["prompt"] == "two\nlines", "source"].item().endswith("a.csv:2")


def test_empty_cells_take_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "prompt,negativePrompt,steps\nfox,,\n")
    [row] = load_grid([path]).to_dict("records")
    assert row["steps"] == 25
    assert row["negativePrompt"].startswith("bad quality")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.csv", "", "file is empty"),
        ("h.csv", "prompt,seed\n", "header but no rows"),
        ("n.csv", "\n\n", "no header row"),
        ("u.csv", "prompt,numframes\na,81\n", "unknown column 'numframes' (did you mean numFrames?)"),
        ("p.csv", "seed\n1\n", "no prompt column"),
        ("d.csv", "prompt,seed,seed\na,1,2\n", "column 'seed' appears twice"),
        ("f.csv", "prompt,seed\na,1,2\n", "row 1: has 3 fields, the header has 2 (line 2)"),
        ("q.csv", 'prompt\n"unterminated\n', "malformed CSV"),
        ("b.csv", b"prompt\n\xff\xfe\n", "is not UTF-8"),
        ("x.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("g.json", '{"prompt": "a"}', "unsupported file type '.json'"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(GridError) as caught:
        load_grid([path])
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_missing_paths_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(GridError, match="no such file"):
        grid_files([tmp_path / "nope.csv"])
    with pytest.raises(GridError, match=r"holds no \.csv or \.parquet"):
        grid_files([tmp_path])


def test_parquet_with_a_struct_column_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"prompt": ["a"], "seed": [{"x": 1}]}), tmp_path / "s.parquet")
    with pytest.raises(GridError, match="field seed: column type"):
        read_grid_file(tmp_path / "s.parquet")


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["seed"], "is not NAME=V1,V2"),
        (["sed=1,2"], "unknown input 'sed'"),
        (["seed=1,,2"], "empty value"),
        (["seed=1", "seed=2"], "given twice"),
    ],
)
def test_bad_axes(specs: list[str], message: str) -> None:
    with pytest.raises(GridError, match=message):
        parse_axes(specs)


def test_axes_parse() -> None:
    assert parse_axes(["seed=1, 2", "scale=4.5,6"]) == {"seed": ["1", "2"], "scale": ["4.5", "6"]}


def test_axes_given_as_a_flow_parameter_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "prompt\na\n")
    with pytest.raises(GridError, match="unknown input 'sed'"):
        load_grid([path], {"sed": ["1"]})
    with pytest.raises(GridError, match="seed needs one or more non-empty values"):
        load_grid([path], {"seed": []})
    assert sorted(load_grid([path], {"seed": [1, "2"]})["seed"]) == ["1", "2"]


def test_an_unreadable_file_is_a_grid_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "locked.csv", "prompt\na\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", refuse)  # root reads any file: the refusal is the OS's, stood in for
        with pytest.raises(GridError, match=r"locked\.csv: cannot be read: Permission denied"):
            read_grid_file(path)


def test_every_bad_row_is_reported_at_once_across_files(tmp_path: Path) -> None:
    """Row 2's error must not wait until row 1 is fixed: one message lists them all."""
    a = write(tmp_path, "a.csv", "prompt,numFrames,steps\nok,81,20\nbad frames,80,20\nbad steps,81,500\n")
    b = write(tmp_path, "b.csv", "prompt,sed\nx,1\n")
    with pytest.raises(GridError) as caught:
        load_grid([a, b])
    lines = str(caught.value).splitlines()
    assert lines[0] == "3 problems in the grid:"
    assert lines[1:] == [
        f"  {b}: unknown column 'sed' (did you mean seed?); columns are prompt, negativePrompt, size, numFrames, "
        "scale, steps, fps, seed, inputImage, inputImageUrl, width, height",
        f"  {a}, row 2, field numFrames: must be 4n+1 (5, 9, ..., 81, ..., 121, ...) (got '80')",
        f"  {a}, row 3, field steps: must be between 1 and 100 (got '500')",
    ]
    assert caught.value.exit_code == 2


def test_a_long_list_of_bad_rows_is_capped_and_says_how_many_more() -> None:
    rows: list[dict[str, object]] = [{"prompt": f"p{n}", "numFrames": "80"} for n in range(25)]
    with pytest.raises(GridError) as caught:
        expand_grid(frame(*rows), {"seed": ["1", "2"]})
    lines = str(caught.value).splitlines()
    assert lines[0] == "25 problems in the grid:", "one per row, not one per combination"
    assert lines[1] == "  g.csv, row 1, field numFrames: must be 4n+1 (5, 9, ..., 81, ..., 121, ...) (got '80')"
    assert len(lines) == 1 + 10 + 1
    assert lines[-1] == "  …and 15 more like these"


def test_a_bad_axis_value_is_reported_once_not_per_row() -> None:
    with pytest.raises(GridError) as caught:
        expand_grid(frame({"prompt": "a"}, {"prompt": "b"}), {"steps": ["20", "500"]})
    assert str(caught.value) == "--axis, field steps: must be between 1 and 100 (got '500')"


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["sed=1,2"], "--axis: unknown input 'sed' (did you mean seed?); inputs are prompt, negativePrompt"),
        (["numframes=9"], "unknown input 'numframes' (did you mean numFrames?)"),
        (["colour=red"], "unknown input 'colour'; inputs are"),
    ],
)
def test_unknown_axis_names_suggest_the_input_meant(specs: list[str], message: str) -> None:
    with pytest.raises(GridError) as caught:
        parse_axes(specs)
    assert str(caught.value).startswith(message) if message.startswith("--") else message in str(caught.value)
    with pytest.raises(GridError, match=r"did you mean seed\?"):
        load_grid([], {"sede": ["1"]})


def test_every_bad_field_of_a_row_is_reported_not_only_the_first(tmp_path: Path) -> None:
    """A bad `size` must not hide `steps=abc` in the same row."""
    grid = write(tmp_path, "g.csv", "prompt,size,steps,fps\nok,huge,abc,16\n")
    with pytest.raises(GridError) as caught:
        load_grid([grid])
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 problems in the grid:", lines
    assert lines[1].startswith(f"  {grid}, row 1, field size: "), lines
    assert lines[2].startswith(f"  {grid}, row 1, field steps: "), lines


def test_a_wrong_field_count_hides_no_other_error_in_the_file(tmp_path: Path) -> None:
    grid = write(tmp_path, "g.csv", "prompt,steps\nshort\nfine,20\nbad steps,500\nlong,20,extra\n")
    with pytest.raises(GridError) as caught:
        load_grid([grid])
    lines = str(caught.value).splitlines()
    assert lines == [
        "3 problems in the grid:",
        f"  {grid}, row 1: has 1 fields, the header has 2 (line 2)",
        f"  {grid}, row 4: has 3 fields, the header has 2 (line 5)",
        f"  {grid}, row 3, field steps: must be between 1 and 100 (got '500')",
    ], "the file's shape first, then its rows' values"

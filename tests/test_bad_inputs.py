"""Bad inputs through the real command line: each one exits 2 with a clear message, sends no Run
request and leaves OUT alone.

Every case runs `wiro-sweep run ...` in this process (click's CliRunner) with credentials
pointing at a live emulator, so an input that slipped through validation would really be
submitted and show up in the emulator's counters. A message must name the file (the option, for
option values), the row and field where those apply, and the broken rule.
"""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from flows.cli import main
from flows.grid import MAX_FILE_BYTES
from wiro_tasks.emulator import EmulatorServer

from .images import encode, landscape

pytestmark = pytest.mark.usefixtures("prefect_api")  # an input that slipped through runs on the test server


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def csv_case(name: str, text: str | bytes) -> Callable[[Path], list[str]]:
    return lambda tmp: [str(write(tmp / name, text))]


def parquet_case(name: str, columns: dict[str, pa.Array | list[object]], *options: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [str(parquet(tmp / name, pa.table(columns))), *options]


def with_options(*options: str) -> Callable[[Path], list[str]]:
    """A good grid file and the given options."""
    return lambda tmp: [str(write(tmp / "good.csv", "prompt\na red fox\n")), *options]


def truncated_parquet(tmp: Path) -> list[str]:
    whole = parquet(tmp / "whole.parquet", pa.table({"prompt": [f"p{n}" for n in range(500)], "seed": range(500)}))
    data = whole.read_bytes()
    whole.unlink()
    return [str(write(tmp / "truncated.parquet", data[: len(data) // 2]))]


def enormous_file(tmp: Path) -> list[str]:
    """A sparse file one byte past the cap: it costs no disk."""
    path = write(tmp / "enormous.csv", "prompt\na fox\n")
    with path.open("r+b") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    return [str(path)]


def empty_directory(tmp: Path) -> list[str]:
    (tmp / "grids").mkdir()
    write(tmp / "grids" / "notes.txt", "not a grid")
    return [str(tmp / "grids")]


def second_file_bad(tmp: Path) -> list[str]:
    good = write(tmp / "a.csv", "prompt\na fox\n")
    bad = write(tmp / "b.csv", "prompt,steps\nan owl,20\na cat,0\n")
    return [str(good), str(bad)]


def binary_junk() -> bytes:
    junk = random.Random(5).randbytes(512)
    return b"\x89PNG\r\n\x1a\n" + junk


def image_grid(image: Callable[[Path], Path | str], *options: str, extra: str = "") -> Callable[[Path], list[str]]:
    """A grid of one image-to-video row whose `inputImage` cell names what `image(tmp)` made."""

    def make(tmp: Path) -> list[str]:
        name = image(tmp)
        header, cells = ("inputImage,prompt" + (f",{extra.split('=')[0]}" if extra else ""),
                         f"{name},a fox runs" + (f",{extra.split('=')[1]}" if extra else ""))  # fmt: skip
        return [str(write(tmp / "images.csv", f"{header}\n{cells}\n")), *options]

    return make


def png(tmp: Path) -> Path:
    return write(tmp / "start.png", encode(landscape(64, 48), "PNG"))


def fifo(tmp: Path) -> Path:
    """A named pipe: opening it to read waits for a writer that never comes."""
    os.mkfifo(tmp / "frames.fifo")
    return tmp / "frames.fifo"


def sparse(size: int) -> Callable[[Path], Path]:
    """A PNG header followed by zeros, `size` bytes on disk without taking the space."""

    def make(tmp: Path) -> Path:
        path = write(tmp / "huge.png", encode(landscape(64, 48), "PNG"))
        with path.open("r+b") as handle:
            handle.truncate(size)
        return path

    return make


@dataclass(frozen=True)
class Case:
    """Arguments for `run` (made in a temporary directory) and the words the message must hold.

    `{file}` in a word stands for the first argument (the grid file named in the message).
    """

    name: str
    arguments: Callable[[Path], list[str]]
    words: tuple[str, ...]


LONG = "a fox " * 400  # 2,400 characters
FIFTY_SEEDS = "seed=" + ",".join(map(str, range(50)))
MANY = {"prompt": ["a"], "seed": [list(range(20))], "steps": [list(range(1, 21))]}
BIG_AXES = (
    *("--axis", "seed=" + ",".join(map(str, range(400)))),
    *("--axis", "steps=" + ",".join(map(str, range(1, 101)))),
    *("--axis", "fps=" + ",".join(map(str, range(1, 61)))),
)


CASES = [
    # Malformed CSV.
    Case(
        "csv unterminated quote",
        csv_case("q.csv", 'prompt,seed\n"a fox,1\n'),
        ("{file}", "malformed CSV", "unexpected end of data"),
    ),
    Case("csv stray quote", csv_case("s.csv", 'prompt,seed\n"a"fox,1\n'), ("{file}", "malformed CSV")),
    Case(
        "csv ragged row, too many",
        csv_case("r.csv", "prompt,seed\na,1\nb,2,3\n"),
        ("{file}", "row 2", "has 3 fields, the header has 2"),
    ),
    Case(
        "csv ragged row, too few",
        csv_case("f.csv", "prompt,seed,steps\na,1\n"),
        ("{file}", "row 1", "has 2 fields, the header has 3"),
    ),
    Case(
        "csv wrong delimiter",
        csv_case("semi.csv", "prompt;seed;numFrames\na fox;1;9\n"),
        ("{file}", "unknown column 'prompt;seed;numFrames'", "columns are prompt"),
    ),
    Case("csv delimiters only", csv_case("commas.csv", ",,,\n,,,\n"), ("{file}", "no header row")),
    Case("csv blank lines only", csv_case("blank.csv", "\n\n\n"), ("{file}", "no header row")),
    Case("csv binary junk", csv_case("junk.csv", binary_junk()), ("{file}", "is not UTF-8")),
    Case("csv in UTF-16", csv_case("utf16.csv", "prompt\na fox\n".encode("utf-16")), ("{file}", "is not UTF-8")),
    Case(
        "csv in Latin-1", csv_case("latin1.csv", "prompt\ncafé au lait\n".encode("latin-1")), ("{file}", "is not UTF-8")
    ),
    Case("csv BOM and header only", csv_case("bom.csv", "\ufeffprompt,seed\n"), ("{file}", "header but no rows")),
    Case(
        "csv duplicate header",
        csv_case("dup.csv", "prompt,seed,seed\na,1,2\n"),
        ("{file}", "column 'seed' appears twice"),
    ),
    Case("csv pandas index column", csv_case("index.csv", ",prompt\n0,a fox\n"), ("{file}", "unknown column ''")),
    Case("csv empty file", csv_case("empty.csv", ""), ("{file}", "file is empty")),
    # Malformed Parquet.
    Case("parquet truncated", truncated_parquet, ("{file}", "not a readable Parquet file")),
    Case(
        "parquet junk bytes",
        csv_case("junk.parquet", b"PAR1" + binary_junk() + b"PAR1"),
        ("{file}", "not a readable Parquet file"),
    ),
    Case("parquet empty file", csv_case("empty.parquet", b""), ("{file}", "file is empty")),
    Case(
        "parquet no rows",
        parquet_case("none.parquet", {"prompt": pa.array([], pa.string())}),
        ("{file}", "header but no rows"),
    ),
    Case(
        "parquet struct column",
        parquet_case("struct.parquet", {"prompt": ["a"], "seed": [{"x": 1}]}),
        ("{file}", "field seed", "column type struct"),
    ),
    Case(
        "parquet bool column",
        parquet_case("bool.parquet", {"prompt": ["a"], "numFrames": [True]}),
        ("{file}", "field numFrames", "column type bool"),
    ),
    Case(
        "parquet timestamp column",
        parquet_case("ts.parquet", {"prompt": ["a"], "seed": [datetime.datetime(2024, 1, 1)]}),
        ("{file}", "field seed", "column type timestamp"),
    ),
    Case(
        "parquet binary column",
        parquet_case("bin.parquet", {"prompt": pa.array([b"a fox"], pa.binary())}),
        ("{file}", "field prompt", "column type binary"),
    ),
    Case(
        "parquet list of lists",
        parquet_case("nested.parquet", {"prompt": ["a"], "seed": [[[1, 2]]]}),
        ("{file}", "field seed", "column type list<"),
    ),
    Case(
        "parquet list cell, bad number",
        parquet_case("frames.parquet", {"prompt": ["a", "b"], "numFrames": [[9], [9, 80]]}),
        ("{file}", "row 2", "field numFrames", "must be 4n+1", "80"),
    ),
    Case(
        "parquet list cell, text",
        parquet_case("steps.parquet", {"prompt": ["a"], "steps": [["10", "ten"]]}),
        ("{file}", "row 1", "field steps", "must be integer", "ten"),
    ),
    Case(
        "parquet null prompt",
        parquet_case("null.parquet", {"prompt": pa.array([None], pa.string())}),
        ("{file}", "row 1", "field prompt", "required"),
    ),
    Case(
        "parquet infinite scale",
        parquet_case("inf.parquet", {"prompt": ["a"], "scale": [float("inf")]}),
        ("{file}", "row 1", "field scale", "must be integer or float"),
    ),
    Case(
        "parquet negative seed",
        parquet_case("seed.parquet", {"prompt": ["a"], "seed": [-1]}),
        ("{file}", "row 1", "field seed", "must be an integer between 0 and 4294967295"),
    ),
    # Wrong types.
    Case(
        "text in numFrames",
        csv_case("t.csv", "prompt,numFrames\na,nine\n"),
        ("{file}", "row 1", "field numFrames", "must be integer", "'nine'"),
    ),
    Case(
        "float steps",
        csv_case("st.csv", "prompt,steps\na,20\nb,2.5\n"),
        ("{file}", "row 2", "field steps", "must be integer", "'2.5'"),
    ),
    Case(
        "boolean scale",
        csv_case("b.csv", "prompt,scale\na,true\n"),
        ("{file}", "row 1", "field scale", "must be integer or float", "'true'"),
    ),
    Case(
        "NaN frames",
        csv_case("nan.csv", "prompt,numFrames\na,NaN\n"),
        ("{file}", "row 1", "field numFrames", "must be integer"),
    ),
    Case(
        "fractional seed",
        csv_case("fs.csv", "prompt,seed\na,1.5\n"),
        ("{file}", "row 1", "field seed", "must be an integer between"),
    ),
    # Unknown columns.
    Case(
        "unknown column",
        csv_case("u.csv", "prompt,frames\na,81\n"),
        ("{file}", "unknown column 'frames'", "did you mean numFrames?"),
    ),
    Case(
        "column case typo",
        csv_case("c.csv", "prompt,numframes\na,81\n"),
        ("{file}", "unknown column 'numframes'", "did you mean numFrames?"),
    ),
    Case(
        "capitalised prompt",
        csv_case("p.csv", "Prompt\na fox\n"),
        ("{file}", "unknown column 'Prompt'", "did you mean prompt?"),
    ),
    Case("no prompt column", csv_case("np.csv", "seed\n1\n"), ("{file}", "no prompt column")),
    # Out of range.
    Case(
        "numFrames not 4n+1",
        csv_case("n80.csv", "prompt,numFrames\na,81\nb,80\n"),
        ("{file}", "row 2", "field numFrames", "must be 4n+1", "'80'"),
    ),
    Case(
        "numFrames too large",
        csv_case("n245.csv", "prompt,numFrames\na,245\n"),
        ("{file}", "row 1", "field numFrames", "must be between 5 and 241"),
    ),
    Case(
        "steps 0",
        csv_case("s0.csv", "prompt,steps\na,0\n"),
        ("{file}", "row 1", "field steps", "must be between 1 and 100"),
    ),
    Case(
        "scale above 20",
        csv_case("sc.csv", "prompt,scale\na,20.5\n"),
        ("{file}", "row 1", "field scale", "must be between 0 and 20"),
    ),
    Case(
        "fps 0", csv_case("fps.csv", "prompt,fps\na,0\n"), ("{file}", "row 1", "field fps", "must be between 1 and 60")
    ),
    Case(
        "seed negative",
        csv_case("sn.csv", "prompt,seed\na,-1\n"),
        ("{file}", "row 1", "field seed", "must be an integer between 0 and 4294967295"),
    ),
    Case(
        "seed too large",
        csv_case("sl.csv", "prompt,seed\na,4294967296\n"),
        ("{file}", "row 1", "field seed", "must be an integer between 0 and 4294967295"),
    ),
    Case(
        "size not offered",
        csv_case("sz.csv", "prompt,size\na,1024*1024\n"),
        ("{file}", "row 1", "field size", "must be one of 832*480, 480*832"),
    ),
    Case(
        "size spelled with x",
        csv_case("sx.csv", "prompt,size\na,832x480\n"),
        ("{file}", "row 1", "field size", "must be one of"),
    ),
    # Enormous, empty and missing files.
    Case(
        "enormous file",
        enormous_file,
        ("{file}", f"file is {MAX_FILE_BYTES + 1:,} bytes", f"more than the {MAX_FILE_BYTES:,} allowed"),
    ),
    Case("missing file", lambda tmp: [str(tmp / "nowhere.csv")], ("{file}", "no such file")),
    Case("directory without grids", empty_directory, ("{file}", "holds no .csv or .parquet file")),
    Case(
        "unsupported file type", csv_case("grid.json", '{"prompt": "a"}'), ("{file}", "unsupported file type '.json'")
    ),
    Case("second file bad", second_file_bad, ("b.csv", "row 2", "field steps", "must be between 1 and 100")),
    # Unicode and control characters in prompts.
    Case(
        "NUL in prompt",
        csv_case("nul.csv", "prompt\nfine\nnul\x00here\n"),
        ("{file}", "row 2", "field prompt", "control character U+0000"),
    ),
    Case(
        "BEL in prompt",
        csv_case("bel.csv", "prompt\nbell\x07here\n"),
        ("{file}", "row 1", "field prompt", "control character U+0007"),
    ),
    Case(
        "ESC in prompt",
        csv_case("esc.csv", "prompt\n\x1b[31mred\x1b[0m fox\n"),
        ("{file}", "row 1", "field prompt", "control character U+001B"),
    ),
    Case(
        "DEL in prompt",
        csv_case("del.csv", "prompt\nfox\x7f\n"),
        ("{file}", "row 1", "field prompt", "control character U+007F"),
    ),
    Case(
        "ESC in negativePrompt",
        csv_case("neg.csv", "prompt,negativePrompt\nfox,blur\x1b\n"),
        ("{file}", "row 1", "field negativePrompt", "control character U+001B"),
    ),
    Case(
        "line separator in prompt",
        csv_case("ls.csv", "prompt\nfox\u2028owl\n"),
        ("{file}", "row 1", "field prompt", "control character U+2028"),
    ),
    Case(
        "NUL in a Parquet prompt",
        parquet_case("nul.parquet", {"prompt": ["ok", "a\x00b"]}),
        ("{file}", "row 2", "field prompt", "control character U+0000"),
    ),
    Case(
        "blank prompt",
        csv_case("blank_prompt.csv", "prompt,seed\n   ,1\n"),
        ("{file}", "row 1", "field prompt", "required"),
    ),
    Case(
        "over-long prompt",
        csv_case("long.csv", f"prompt\n{LONG}\n"),
        ("{file}", "row 1", "field prompt", "must be at most 2000 characters (has 2400)"),
    ),
    # Python's csv module refuses fields over 128 KiB; the message must still say which row and rule.
    Case(
        "enormous prompt",
        csv_case("huge.csv", "prompt\n" + "x" * 200_000 + "\n"),
        ("{file}", "row 1", "prompt", "at most 2000 characters"),
    ),
    # Grids that expand past the maximum.
    Case(
        "axis past --max-combinations",
        with_options("--axis", FIFTY_SEEDS, "--max-combinations", "10"),
        ("expands to 50 combinations", "more than the maximum 10"),
    ),
    Case(
        "list cells past --max-combinations",
        parquet_case("many.parquet", MANY, "--max-combinations", "100"),
        ("expands to 400 combinations", "more than the maximum 100 "),
    ),
    Case(
        "axes past the default maximum",
        with_options(*BIG_AXES),
        ("expands to 2,400,000 combinations", "more than the maximum 100,000"),
    ),
    # Bad --axis specs.
    Case("axis without =", with_options("--axis", "seed"), ("--axis", "'seed' is not NAME=V1,V2,...")),
    Case("axis without a name", with_options("--axis", "=1,2"), ("--axis", "'=1,2' is not NAME=V1,V2,...")),
    Case("axis of an unknown input", with_options("--axis", "frames=9,13"), ("--axis", "unknown input 'frames'")),
    Case("axis with an empty value", with_options("--axis", "seed=1,,2"), ("--axis", "seed has an empty value")),
    Case("axis with no values", with_options("--axis", "seed="), ("--axis", "seed has an empty value")),
    Case("axis given twice", with_options("--axis", "seed=1", "--axis", "seed=2"), ("--axis", "seed is given twice")),
    Case(
        "axis with a bad value", with_options("--axis", "numFrames=9,80"), ("field numFrames", "must be 4n+1", "'80'")
    ),
    Case(
        "axis with a bad size",
        with_options("--axis", "size=1024*1024"),
        ("field size", "must be one of 832*480, 480*832"),
    ),
    # Bad --budget and other options.
    Case(
        "budget not a number",
        with_options("--budget", "ten dollars"),
        ("--budget", "'ten dollars' is not an amount in USD"),
    ),
    Case("budget zero", with_options("--budget", "0"), ("--budget", "must be more than 0")),
    Case("budget negative", with_options("--budget", "-3"), ("--budget", "must be more than 0")),
    Case("budget NaN", with_options("--budget", "NaN"), ("--budget", "must be more than 0")),
    Case("budget infinite", with_options("--budget", "Infinity"), ("--budget", "must be more than 0")),
    Case("estimate zero", with_options("--estimate-usd", "0"), ("--estimate-usd", "must be more than 0")),
    Case(
        "max combinations zero",
        with_options("--max-combinations", "0"),
        ("--max-combinations", "0 is not in the range"),
    ),
    Case(
        "max concurrency zero", with_options("--max-concurrency", "0"), ("--max-concurrency", "0 is not in the range")
    ),
    Case("timeout zero", with_options("--timeout", "0"), ("--timeout", "0 is not in the range")),
    # Bad start images: nothing may be uploaded either.
    Case(
        "image missing",
        image_grid(lambda tmp: "frames/nowhere.png"),
        ("{file}", "row 1", "field inputImage", "frames/nowhere.png", "file not found"),
    ),
    Case(
        "image not an image",
        image_grid(lambda tmp: write(tmp / "notes.png", "just text\n")),
        ("{file}", "row 1", "field inputImage", "notes.png", "jpg, jpeg, png, webp, gif or heic"),
    ),
    Case(
        "image of a type Wiro refuses",
        image_grid(lambda tmp: write(tmp / "s.bmp", encode(landscape(8, 8), "BMP"))),
        ("{file}", "row 1", "field inputImage", "s.bmp", "jpg, jpeg, png, webp, gif or heic"),
    ),
    Case(
        "image over 100 MB",
        image_grid(sparse(100_000_001)),
        ("{file}", "row 1", "field inputImage", "huge.png", "100,000,000"),
    ),
    Case("image is a directory", image_grid(lambda tmp: tmp), ("{file}", "row 1", "field inputImage", "directory")),
    Case(
        "image is a named pipe",
        image_grid(fifo),
        ("{file}", "row 1", "field inputImage", "frames.fifo", "is a FIFO (named pipe); a start image must be"),
    ),
    Case(
        "image and URL in one row",
        image_grid(png, extra="inputImageUrl=https://example.com/a.png"),
        ("{file}", "row 1", "field inputImage", "not both"),
    ),
    Case(
        "size on an image row",
        image_grid(png, extra="size=832*480"),
        ("{file}", "row 1", "field size", "takes width and height"),
    ),
    Case(
        "width not a multiple of 32",
        image_grid(png, extra="width=500"),
        ("{file}", "row 1", "field width", "multiple of 32"),
    ),
    Case(
        "image on a forced text model",
        image_grid(png, "--model", "text-to-video"),
        ("{file}", "row 1", "field inputImage", "is not an input of Wan-AI/Wan2.2-TI2V-5B-text-to-video"),
    ),
    Case(
        "no image on a forced image model",
        with_options("--model", "i2v"),
        ("{file}", "row 1", "field inputImageUrl", "required"),
    ),
    Case("unknown model", with_options("--model", "sora"), ("--model", "unknown model 'sora'", "image-to-video")),
    Case(
        "image URL not http",
        csv_case("u.csv", "inputImageUrl,prompt\nftp://x/a.png,a fox\n"),
        ("{file}", "row 1", "field inputImageUrl", "must be an http(s) URL"),
    ),
    Case(
        "image URL of 5,000 characters",
        csv_case("long.csv", "inputImageUrl,prompt\nhttps://e.example/" + "a" * 5000 + ".png,a fox\n"),
        ("{file}", "row 1", "field inputImageUrl", "must be at most 4096 characters"),
    ),
    Case(
        "image URL with a space",
        csv_case("space.csv", 'inputImageUrl,prompt\n"https://e.example/a b.png",a fox\n'),
        ("{file}", "row 1", "field inputImageUrl", "without spaces or control characters"),
    ),
    Case(
        "image axis of an empty directory",
        with_options("--axis", "inputImage=."),
        ("--axis", "field inputImage", "holds no image"),
    ),
]


@pytest.fixture
def point_at(emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None]) -> EmulatorServer:
    wiro_env(emulator)
    return emulator


def invoke(arguments: list[str], out: Path) -> Result:
    return CliRunner().invoke(main, ["run", *arguments, "--out", str(out)])


def test_there_are_at_least_thirty_distinct_bad_inputs() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_a_clear_message_and_no_run_request(
    case: Case, point_at: EmulatorServer, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    arguments = case.arguments(inputs)
    out = tmp_path / "out"
    result = invoke(arguments, out)
    output = result.output
    assert "Traceback" not in output, output
    assert result.exit_code == 2, (arguments[:1], result.exit_code, output[-2000:], result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    for word in case.words:
        expected = word.replace("{file}", arguments[0])
        assert expected in output, f"{expected!r} not in the message:\n{output}"
    counters = point_at.account.stats()["counters"]
    assert "run" not in counters, "a Run request was sent"
    assert "upload" not in counters, "an image was uploaded"
    assert not out.exists(), "bad input never touches OUT"


def test_an_out_that_is_a_file_exits_2_and_is_left_alone(point_at: EmulatorServer, tmp_path: Path) -> None:
    grid = write(tmp_path / "good.csv", "prompt\na fox\n")
    out = write(tmp_path / "out", "my notes")
    result = invoke([str(grid)], out)
    assert result.exit_code == 2, result.output
    assert "--out" in result.output, result.output
    assert "is a file" in result.output, result.output
    assert out.read_text() == "my notes"
    assert "run" not in point_at.account.stats()["counters"]


def test_valid_unicode_prompts_are_accepted(point_at: EmulatorServer, tmp_path: Path) -> None:
    """The positive control: Chinese, emoji, accents, quotes and newlines are all fine."""
    grid = write(
        tmp_path / "unicode.csv",
        'prompt,negativePrompt\n一只红狐狸在雪中奔跑 🦊❄️,模糊\n"café, ""crème"" — naïve\nsecond line",\n',
    )
    out = tmp_path / "out"
    result = invoke([str(grid), "--dry-run"], out)
    assert result.exit_code == 0, result.output
    assert "2 combinations; 0 already done" in result.output
    assert "Nothing was submitted (--dry-run)." in result.output
    assert "run" not in point_at.account.stats()["counters"]
    assert not out.exists()

"""results/README.md against the folder: every recorded result has its line, and every line names
something that is there. The rules are the ones the README states; a failure says which line to add or fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"
INDEX = "README.md"
GENERATED = ("runs", "tables", "plots")  # make sweep / tables / plots write them; git ignores them
# How a record states the command that wrote it: a JSON "command", or a command in backticks near the top.
COMMAND = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?(?:python|make) [^`]+)`")


def rows(text: str) -> list[tuple[int, list[str], list[str]]]:
    """(line number, paths named in the first cell, cells) of each table row that names a record."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            found.append((number, re.findall(r"`([^`]+)`", cells[0]), cells))
    return found


def stated_command(path: Path) -> str:
    """The command a record says wrote it (for the line to add), else a placeholder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in sorted(files, key=lambda p: p.name != INDEX)[:5]:
        try:
            text = f.read_text(encoding="utf-8")[:4000]
        except (UnicodeDecodeError, OSError):
            continue
        if f.suffix == ".json":
            try:
                command = json.loads(f.read_text(encoding="utf-8")).get("command")
            except (ValueError, AttributeError):
                command = None
            if isinstance(command, str):
                return command
        match = COMMAND.search(text)
        if match:
            return match.group(1)
    return "<the command that wrote it>"


def line_for(root: Path, names: list[str]) -> str:
    """The line to add for a record made of `names` (files one command wrote together share a stem)."""
    first = ", ".join(f"`{n}`" for n in names)
    stated = [stated_command(root / n.rstrip("/")) for n in names]
    command = next((c for c in stated if not c.startswith("<")), stated[0])
    return f"| {first} | `{command}` | <what it shows> | <commit and load, if the record says> |"


def index_problems(root: Path) -> list[str]:
    """Each way results/README.md and the folder `root` disagree, as one line saying what to change."""
    index = root / INDEX
    if not index.is_file():
        return [f"{index} is missing: it lists every recorded result under {root}, one line each"]
    table = rows(index.read_text(encoding="utf-8"))
    problems: list[str] = []
    named: dict[str, int] = {}
    for number, paths, cells in table:
        where = f"{index} line {number}"
        if len(cells) < 4 or "`" not in cells[1] or not cells[2]:
            problems.append(f"{where}: a line is | `record` | `command` | what it shows | recorded |")
        for name in paths:
            path = root / name.rstrip("/")
            top = name.split("/")[0]
            if name in named:
                problems.append(f"{where}: `{name}` is already named on line {named[name]}: keep one line")
            named[name] = number
            if top in GENERATED or path.name == INDEX:
                problems.append(f"{where}: `{name}` is generated or an index, not a record: remove it")
            elif not path.exists():
                problems.append(
                    f"{where}: `{name}` does not exist under {root}: remove the line or fix the name"
                )
            elif path.is_dir() != name.endswith("/"):
                right = name.rstrip("/") + ("/" if path.is_dir() else "")
                problems.append(
                    f"{where}: `{name}` is a {'folder' if path.is_dir() else 'file'}: write `{right}`"
                )
    for name, number in named.items():
        for whole in (p for p in named if p.endswith("/") and p != name and name.startswith(p)):
            problems.append(f"{index} line {number}: `{name}` is part of `{whole}` (line {named[whole]})")
    missing: dict[tuple[str, str], list[str]] = {}  # (folder, stem): files sharing a stem are one record
    for name in unlisted(root, named):
        folder, _, leaf = name.rstrip("/").rpartition("/")
        missing.setdefault((folder, leaf.split(".")[0] + name[len(name.rstrip("/")) :]), []).append(name)
    for (folder, _), found in missing.items():
        names = sorted(found, key=lambda n: (not n.endswith(".md"), n))  # the table first, as people read
        several = f" ({folder}/ holds several records, one line each)" if folder else ""
        listed = ", ".join(f"results/{n}" for n in names)
        add = f"add this line to its table\n  {line_for(root, names)}"
        problems.append(f"{index} has no line for {listed}{several}: {add}")
    return problems


def unlisted(root: Path, named: dict[str, int]) -> list[str]:
    """The entries of `root` that need a line and have none: top-level ones, and the entries of a folder
    some of whose entries have lines (a folder of several records)."""

    def covered(rel: str) -> bool:
        return rel in named or rel + "/" in named

    def record(entry: Path) -> bool:
        return entry.name not in (INDEX, *GENERATED) and not entry.name.startswith(".")

    found = []
    for entry in filter(record, sorted(root.iterdir())):
        slash = "/" if entry.is_dir() else ""
        if covered(entry.name):
            continue
        if not (slash and any(n.startswith(entry.name + "/") for n in named)):
            found.append(entry.name + slash)
            continue
        for child in filter(
            lambda c: c.name != INDEX and not c.name.startswith("."), sorted(entry.iterdir())
        ):
            if not covered(f"{entry.name}/{child.name}"):
                found.append(f"{entry.name}/{child.name}" + ("/" if child.is_dir() else ""))
    return found


def test_every_recorded_result_has_its_line_and_every_line_a_record() -> None:
    problems = index_problems(RESULTS)
    assert not problems, "\n".join(problems)


def fake_results(tmp_path: Path, table: list[str]) -> Path:
    root = tmp_path / "results"
    (root / "runs" / "some-run").mkdir(parents=True)
    (root / "sweep").mkdir()
    (root / "sweep" / "runs.md").write_text("# table\n")
    (root / "sweep" / "README.md").write_text("`make sweep`, copied\n")
    (root / "many").mkdir()
    (root / "many" / "a.json").write_text(json.dumps({"command": "python scripts/a.py --n 3"}))
    (root / "many" / "README.md").write_text("notes\n")
    (root / "speed.md").write_text("# Speed\n\nCommand: `OMP_NUM_THREADS=1 python scripts/speed.py`\n")
    head = [
        "# Recorded results",
        "",
        "| record | reproduce with | what it shows | recorded |",
        "|---|---|---|---|",
    ]
    (root / INDEX).write_text("\n".join([*head, *table]) + "\n")
    return root


FULL = [
    "| `sweep/` | `make sweep` | the sweep | load 0.3 |",
    "| `many/a.json` | `python scripts/a.py` | a | - |",
    "| `speed.md` | `python scripts/speed.py` | speed | load 1 |",
]


def test_a_complete_index_passes_and_generated_folders_need_no_line(tmp_path: Path) -> None:
    assert index_problems(fake_results(tmp_path, FULL)) == []


def test_a_new_record_gets_the_exact_line_to_add(tmp_path: Path) -> None:
    root = fake_results(tmp_path, FULL[:2])
    (root / "many" / "b.md").write_text("Command: `python scripts/b.py --limit 5` (30 s)\n")
    (root / "pair.json").write_text(json.dumps({"command": "python scripts/pair.py"}))
    (root / "pair.md").write_text("# Pair\n")
    (root / "fresh").mkdir()
    (root / "fresh" / "x.json").write_text("{}")
    problems = "\n".join(index_problems(root))
    expected = [
        "| `speed.md` | `OMP_NUM_THREADS=1 python scripts/speed.py` | <what it shows> |",
        "| `many/b.md` | `python scripts/b.py --limit 5` | <what it shows> |",
        "| `fresh/` | `<the command that wrote it>` | <what it shows> |",
        "| `pair.md`, `pair.json` | `python scripts/pair.py` | <what it shows> |",  # one record, one line
    ]
    for line in expected:
        assert line in problems
    assert "many holds several records" not in problems and "many/ holds several records" in problems
    assert "results/runs" not in problems


def test_a_line_for_nothing_is_named_with_its_line_number(tmp_path: Path) -> None:
    root = fake_results(tmp_path, [*FULL, "| `gone.md` | `python scripts/gone.py` | gone | - |"])
    (problem,) = index_problems(root)
    assert "line 8" in problem and "`gone.md` does not exist" in problem


def test_malformed_duplicate_and_overlapping_lines_are_refused(tmp_path: Path) -> None:
    table = [
        *FULL,
        "| `speed.md` | `python scripts/speed.py` | again | - |",
        "| `sweep/runs.md` | `make sweep` | part of the sweep | - |",
        "| `many` | `python scripts/a.py` | a folder without its slash | - |",
        "| `runs/some-run/` | `make sweep` | generated | - |",
        "| `many/README.md` | no command | notes |",
    ]
    problems = "\n".join(index_problems(fake_results(tmp_path, table)))
    assert "already named on line 7" in problems
    assert "`sweep/runs.md` is part of `sweep/`" in problems
    assert "`many` is a folder: write `many/`" in problems
    assert (
        "`runs/some-run/` is generated" in problems
        and "`many/README.md` is generated or an index" in problems
    )
    assert "a line is | `record` | `command` | what it shows | recorded |" in problems

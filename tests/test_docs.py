"""The documents hold together: docs/design/README.md lists every decision
record by its number, file and own title and status, and every relative
link in README.md and docs/ reaches a file (and a heading, where it names
one) that exists."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design"


def _records() -> dict[str, tuple[str, str, str]]:
    """Each record's file: (number, title, status) as the record says them."""
    found = {}
    for path in sorted(DESIGN.glob("[0-9][0-9][0-9][0-9]-*.md")):
        text = path.read_text()
        heading = re.match(r"# (\d{4}): (.+)\n", text)
        status = re.search(r"^Status: (.+)$", text, flags=re.MULTILINE)
        assert heading is not None and status is not None, path.name
        found[path.name] = (heading.group(1), heading.group(2), status.group(1))
    return found


def test_each_record_is_numbered_as_its_file_is() -> None:
    for name, (number, _, _) in _records().items():
        assert name.startswith(number + "-"), f"{name} is headed {number}"


def test_the_design_index_lists_every_record_by_its_own_title_and_status() -> None:
    index = (DESIGN / "README.md").read_text()
    rows = re.findall(r"^\| (\d{4}) \| \[(.+)\]\(([^)]+)\) \| (.+) \|$", index, flags=re.MULTILINE)
    listed = {file: (number, title, status) for number, title, file, status in rows}
    assert listed == _records()


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for document in _documents():
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path) if path else document
            if not linked.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def _blocks(text: str, *languages: str) -> list[str]:
    """The Markdown's fenced blocks in one of ``languages`` ("" for none named)."""
    blocks: list[str] = []
    language, current = "", None
    for line in text.splitlines():
        if not line.startswith("```"):
            if current is not None:
                current.append(line)
        elif current is None:
            language, current = line[3:].strip(), []
        else:
            if language in languages:
                blocks.append("\n".join(current))
            current = None
    return blocks


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_code_block_is_closed_by_a_bare_fence() -> None:
    """A fence with text after it does not close its block: the prose after
    it, and everything to the next fence, renders as code."""
    bad = []
    for document in _documents():
        inside = False
        for number, line in enumerate(document.read_text().splitlines(), 1):
            if line.startswith("```"):
                if inside and line.strip() != "```":
                    bad.append(f"{document.relative_to(ROOT)}:{number}: {line}")
                inside = not inside
        if inside:
            bad.append(f"{document.relative_to(ROOT)}: a block is never closed")
    assert bad == []


def test_every_config_file_the_docs_show_loads(tmp_path: Path) -> None:
    from engine.server.config import load_config_file

    path = tmp_path / "tidelog.toml"
    loaded = 0
    for document in _documents():
        for block in _blocks(document.read_text(), "toml"):
            path.write_text(block)
            load_config_file(path)  # ConfigFileError names the section and key
            loaded += 1
    assert loaded >= 10


def test_every_tidelog_command_line_the_docs_show_parses() -> None:
    """Each ``tidelog ...`` line in a shell block of README.md and docs/
    names a command and flags that exist, with values of their kind (a
    synopsis' optional ``[...]`` parts left out)."""
    from engine.cli.main import _COMMANDS, _build_parser

    checked, refused = 0, []
    for document in _documents():
        for block in _blocks(document.read_text(), "", "sh", "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                if "tidelog " not in line or line.lstrip().startswith("#"):
                    continue
                command = line[line.index("tidelog ") :]
                command = re.split(r"\s+#|\s[|>]\s|\s&&\s", command)[0]
                while re.search(r"\[[^\[\]]*\]", command):  # a synopsis' optional parts
                    command = re.sub(r"\s*\[[^\[\]]*\]", "", command)
                argv = shlex.split(command)[1:]
                if argv[0] not in _COMMANDS:
                    refused.append(f"{document.name}: {command}: no such command")
                    continue
                checked += 1
                try:
                    with contextlib.redirect_stderr(io.StringIO()) as err:
                        _build_parser(argv[0]).parse_args(argv)
                except SystemExit:
                    refused.append(f"{document.name}: {command}: {err.getvalue().strip()}")
    assert refused == []
    assert checked >= 70


def test_the_readme_names_every_parameter_of_an_s3_url() -> None:
    """docs/server.md sends a reader to the README for them."""
    from s3stream.store import _S3_OPTIONS

    paragraph = (ROOT / "README.md").read_text().split("Object store URLs:", 1)[1]
    paragraph = paragraph.split("\n\n", 1)[0]
    named = set(re.findall(r"[`?&](\w+)[`=]", paragraph))
    assert [name for name in _S3_OPTIONS if name not in named] == []


def test_every_repository_path_the_docs_name_exists() -> None:
    """A file or folder of the repository a document names (``engine/...``,
    ``bench/...``, ``docs/design/0041``) is there. Decision records and the
    benchmarks' history speak of the code of their time, and are left out."""
    named = re.compile(
        r"(?<![\w/.-])((?:engine|s3stream|wal|native|bench|tests|docs|tidelog)/[\w/.-]*[\w/])"
    )
    record = re.compile(r"docs/design/(\d{4})")
    missing = []
    for document in _documents():
        if document.parent == DESIGN or document.name == "benchmarks.md":
            continue
        for path in named.findall(document.read_text()):
            number = record.fullmatch(path)
            if number is not None:
                found = any(DESIGN.glob(f"{number.group(1)}-*.md"))
            else:
                found = (ROOT / path).exists()
            if not found:
                missing.append(f"{document.relative_to(ROOT)}: {path}")
    assert missing == []


def test_the_serve_flag_table_is_the_parsers() -> None:
    """docs/server.md's table under "Running it" names every flag of
    ``tidelog serve`` and no other, each with the address it takes alone."""
    import argparse

    from engine.cli.main import _build_parser

    section = (ROOT / "docs" / "server.md").read_text().split("## Running it", 1)[1]
    rows = {
        row.split("`")[1].split()[0]: row
        for row in section.split("The config file:", 1)[0].splitlines()
        if row.startswith("| `--")
    }
    (commands,) = (
        a for a in _build_parser("serve")._actions if isinstance(a, argparse._SubParsersAction)
    )
    flags = {
        action.option_strings[-1]: action
        for action in commands.choices["serve"]._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    }
    assert set(rows) == set(flags)
    for name, action in flags.items():
        if isinstance(action.const, str):
            assert f"`{action.const}`" in rows[name], name
        if isinstance(action.default, str):
            assert f"| `{action.default}` |" in rows[name], name


def test_every_section_named_by_its_title_is_a_heading() -> None:
    """``docs/wal-format.md, "Recovery rule"`` in a document, a docstring,
    an error message or a C comment names a heading of that document (the
    title may be a heading's start: "Record" for "Record (44-byte header +
    payload)")."""
    headings = {
        document.name: [
            h.replace("`", "") for h in re.findall(r"^#+ (.+)$", document.read_text(), re.M)
        ]
        for document in (ROOT / "docs").rglob("*.md")
    }
    cited = re.compile(r"(?:docs/)?([\w-]+\.md)\)?,?\s+[\"“]([^\"”\n]{3,80})[\"”]")
    sources = [*_documents(), *(ROOT / "native" / "src").glob("*.[ch]")]
    for package in ("engine", "s3stream", "wal", "native", "bench", "tests"):
        sources += (ROOT / package).rglob("*.py")
    unknown = []
    for source in sources:
        # A title wrapped over lines, in prose, a comment or a docstring.
        text = re.sub(r"\s*\n\s*(?:#|\*|//)?\s*", " ", source.read_text())
        for document, title in cited.findall(text):
            if document not in headings:
                continue  # README.md, or another project's
            start = title.replace("`", "").rstrip(".,").lower()
            if not any(h.lower().startswith(start) for h in headings[document]):
                unknown.append(f"{source.relative_to(ROOT)}: {document}, {title!r}")
    assert unknown == []


def test_every_variable_the_tests_read_is_documented() -> None:
    """A ``TIDELOG_...`` environment variable that changes what the suite
    runs is in docs/testing.md or the README (docs/testing.md, "Short by
    default, long on request")."""
    read = re.compile(r"""(?:environ(?:\.get)?\(?\[?|getenv\()\s*["'](TIDELOG_\w+)["']""")
    variables = {
        name
        for source in (ROOT / "tests").rglob("*.py")
        for name in read.findall(source.read_text())
    }
    documented = (ROOT / "README.md").read_text() + (ROOT / "docs" / "testing.md").read_text()
    assert variables
    assert sorted(name for name in variables if name not in documented) == []

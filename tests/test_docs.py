"""The tutorials (docs/tutorial.md, docs/tutorial.tr.md) and the README's library example run.

Every ```python block of a document (in the tutorials, MyST's ```{code-cell} ipython3: they are
notebooks too) runs, in order, in one namespace per document, as plain Python. A python
block followed directly by a ```text block must print that text; "..." in the expected text
matches anything (doctest's ELLIPSIS), for numbers that depend on the machine.
"""
import contextlib
import doctest
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = [ROOT / "docs" / "tutorial.md", ROOT / "docs" / "tutorial.tr.md"]
# ```python, ```text, … and MyST's ```{code-cell} ipython3, the tutorials' code cells (python).
FENCE = re.compile(r"^```(\{code-cell\}\s+\S+|\w*)\s*$")


@dataclass
class Block:
    lang: str
    code: str
    line: int                   # 1-based line of the opening fence
    expected: str | None = None  # the ```text block right after it, if any


def blocks(text: str) -> list[Block]:
    """Fenced blocks in order; a ```text block directly after a ```python block becomes its
    expected output (only blank lines may lie between them)."""
    found, lines, i = [], text.splitlines(), 0
    gap_only_blank = False
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                gap_only_blank = False
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: code block never closed")
        lang = "python" if m.group(1).startswith("{code-cell}") else m.group(1)
        block = Block(lang, "\n".join(body) + "\n", start + 1)
        if block.lang == "text" and found and found[-1].lang == "python" and gap_only_blank:
            found[-1].expected = block.code
        else:
            found.append(block)
        gap_only_blank = True
        i += 1
    return found


def readme_library_blocks(text: str) -> list[Block]:
    """The ```python blocks under the README's heading that names the library."""
    return readme_section_blocks(text, "library")


def readme_section_blocks(text: str, word: str) -> list[Block]:
    """The ```python blocks under the first README heading holding ``word``, up to the next
    heading of the same or a higher level."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        m = re.match(r"^(#+)\s+(.*)$", line)
        if m and word in m.group(2).lower():
            level, end = len(m.group(1)), len(lines)
            for k in range(n + 1, len(lines)):
                other = re.match(r"^(#+)\s", lines[k])
                if other and len(other.group(1)) <= level:
                    end = k
                    break
            section = blocks("\n".join(lines[n:end]))
            for b in section:
                b.line += n
            return [b for b in section if b.lang == "python"]
    return []


def output_matches(expected: str, got: str) -> bool:
    strip = lambda s: "\n".join(line.rstrip() for line in s.strip("\n").splitlines()) + "\n"
    return doctest.OutputChecker().check_output(strip(expected), strip(got), doctest.ELLIPSIS)


def run_blocks(path: Path, code_blocks: list[Block], namespace: dict | None = None) -> int:
    """Run the python blocks in one namespace; returns how many printed output was checked."""
    namespace = {"__name__": "__doc_example__"} if namespace is None else namespace
    checked = 0
    for b in code_blocks:
        if b.lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(b.code, f"{path.name}:{b.line}", "exec"), namespace)
        if b.expected is not None:
            assert output_matches(b.expected, out.getvalue()), (
                f"{path.name}, block at line {b.line} printed:\n{out.getvalue()}\nexpected:\n{b.expected}")
            checked += 1
    return checked


def documents():
    cases = [pytest.param(p, blocks(p.read_text(encoding="utf-8")), id=p.name) for p in TUTORIALS]
    readme = ROOT / "README.md"
    if readme.is_file():
        example = readme_library_blocks(readme.read_text(encoding="utf-8"))
        if example:  # collected only where the README has a library example
            cases.append(pytest.param(readme, example, id="README-library"))
    return cases


@pytest.fixture
def doc_env(monkeypatch, tmp_path, mnist_dir):
    """Documents run in a scratch folder with MNIST where `load_mnist()` looks for it."""
    monkeypatch.setenv("SIFIR_DATA_DIR", str(mnist_dir))
    monkeypatch.setenv("SIFIR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    import matplotlib
    matplotlib.use("Agg")  # a document that plots must not open a window


# Figures the tutorials' prose gives "on our machine": how to read the value from the tutorial's
# namespace, the figure, and how it is written in each language. The run must come within
# half a percentage point of each (seeded, so only float rounding differs between machines).
PROSE_FIGURES = [
    (lambda ns: ns["val_acc"], 0.939, "93.9%", "%93,9"),
    (lambda ns: ns["acc"][0.01], 0.82, "about 82%", "%82 kadarını"),
    (lambda ns: ns["acc"][0.1], 0.94, "instead of 94%", "%94'ü yerine"),
    (lambda ns: ns["seed_sgd"], 0.761, "76.1%", "%76,1"),
    (lambda ns: ns["mlp_sgd"], 0.700, "70.0%", "%70,0"),
    (lambda ns: ns["mlp_adam"], 0.874, "87.4%", "%87,4"),
]


@pytest.mark.parametrize("path, code_blocks", documents())
def test_document_runs_and_prints_what_it_shows(doc_env, path, code_blocks):
    assert code_blocks, f"{path.name}: no python blocks found"
    namespace = {"__name__": "__doc_example__"}
    checked = run_blocks(path, code_blocks, namespace)
    if path in TUTORIALS:
        assert checked >= 8, f"{path.name}: only {checked} blocks with expected output"
        text = path.read_text(encoding="utf-8")
        for value, figure, en, tr in PROSE_FIGURES:
            assert (tr if path.name.endswith(".tr.md") else en) in text
            assert abs(value(namespace) - figure) <= 0.005, (en, value(namespace))
        history = namespace["history"]   # "the validation accuracy dipped in the second epoch"
        assert history[1].val_acc < history[0].val_acc


def code_tokens(code: str) -> list[tuple[int, str]]:
    """The code's tokens without comments (and the line breaks comments leave)."""
    skip = {tokenize.COMMENT, tokenize.NL}
    return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in skip]


def test_both_tutorials_have_the_same_code_and_output():
    en, tr = (blocks(p.read_text(encoding="utf-8")) for p in TUTORIALS)
    en_code = [b for b in en if b.lang == "python"]
    tr_code = [b for b in tr if b.lang == "python"]
    assert len(en_code) == len(tr_code)
    for a, b in zip(en_code, tr_code):
        assert code_tokens(a.code) == code_tokens(b.code), f"code differs: line {a.line} (en) vs {b.line} (tr)"
        assert a.expected == b.expected, f"expected output differs: line {a.line} (en) vs {b.line} (tr)"
    assert [b.code for b in en if b.lang == "bash"] == [b.code for b in tr if b.lang == "bash"]


def test_the_checker_catches_wrong_output(tmp_path):
    doc = "x\n\n```python\nprint(6 * 7)\n```\n\n```text\n43\n```\n\n```python\nprint('a', 1.2345)\n```\n```text\na ...\n```\n"
    found = blocks(doc)
    assert [(b.lang, b.expected) for b in found] == [("python", "43\n"), ("python", "a ...\n")]
    with pytest.raises(AssertionError, match=r"printed:\s+42"):
        run_blocks(tmp_path / "doc.md", found)
    assert output_matches("a ...\n", "a 1.2345\n") and not output_matches("a 1.3\n", "a 1.2345\n")
    # a text block after prose is an illustration, not expected output
    assert blocks("```python\npass\n```\nprose\n```text\nx\n```\n")[0].expected is None


def test_readme_section_finder():
    text = ("# sifir\n## Use it as a library\n```python\nprint(1)\n```\n### detail\n```python\nprint(2)\n```\n"
            "## Other\n```python\nprint(3)\n```\n")
    assert [b.code for b in readme_library_blocks(text)] == ["print(1)\n", "print(2)\n"]
    assert readme_library_blocks("# sifir\n```python\nprint(1)\n```\n") == []

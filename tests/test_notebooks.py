"""The tutorials as Jupyter notebooks. The Markdown (MyST with a jupytext header) is the source:
the committed notebooks must be what jupytext makes of it, and both run top to bottom in a real
kernel, print what the text shows and draw their pictures inline."""
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest
from test_docs import TUTORIALS, blocks, output_matches


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


@pytest.mark.parametrize("markdown", TUTORIALS, ids=lambda p: p.name)
def test_the_committed_notebook_is_made_from_the_markdown(markdown: Path):
    made = jupytext.read(markdown)
    committed = nbformat.read(markdown.with_suffix(".ipynb"), as_version=4)
    hint = f"{markdown.with_suffix('.ipynb').name} is not {markdown.name}: run `jupytext --sync docs/{markdown.name}`"
    assert cells(committed) == cells(made), hint
    assert committed.metadata.kernelspec == made.metadata.kernelspec, hint
    assert sum(cell.cell_type == "code" for cell in made.cells) >= 20


@pytest.mark.parametrize("markdown", TUTORIALS, ids=lambda p: p.name)
def test_the_notebook_runs_in_a_kernel_with_its_pictures_inline(markdown: Path, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SIFIR_DATA_DIR", str(mnist_dir))       # the kernel inherits the environment
    monkeypatch.setenv("SIFIR_STATE_DIR", str(tmp_path / "state"))
    notebook = nbformat.read(markdown.with_suffix(".ipynb"), as_version=4)
    # Raises CellExecutionError, with the cell and the traceback, on any error.
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    python = [b for b in blocks(markdown.read_text(encoding="utf-8")) if b.lang == "python"]
    assert len(code) == len(python)
    pictures = 0
    for cell, block in zip(code, python):
        printed = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
        if block.expected is not None:
            assert output_matches(block.expected, printed), f"cell at line {block.line} printed:\n{printed}"
        images = [o for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.data]
        assert len(images) == cell.source.count("show("), f"cell at line {block.line}"
        pictures += len(images)
    assert pictures >= 4   # learning curves, test digits, confusion matrix, first layer
    assert not list(tmp_path.glob("*.png"))   # inline, not written to files

"""Notebooks run top to bottom (nbclient) on the real data, outputs stripped in git."""

from pathlib import Path

import nbformat
import pytest

from kinesis_neuro.notebooks import execute

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, data_dir, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "strip outputs"
    execute(path, tmp_path / "figures")
    assert list((tmp_path / "figures").rglob("*.png")), "every notebook writes its figures to $FIGURES"

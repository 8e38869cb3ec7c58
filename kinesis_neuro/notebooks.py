"""Running the project's notebooks top to bottom (nbclient), e.g. to regenerate ``figures/``.

    python -m kinesis_neuro.notebooks notebooks/*.ipynb --figures figures
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def execute(path: str | Path, figures: str | Path, timeout: int = 600) -> None:
    """Execute a notebook in its own folder with ``FIGURES`` pointing at ``figures``; outputs are not saved."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    previous = os.environ.get("FIGURES")
    os.environ["FIGURES"] = str(Path(figures).resolve())
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if previous is None:
            os.environ.pop("FIGURES", None)
        else:
            os.environ["FIGURES"] = previous


def main() -> None:
    parser = argparse.ArgumentParser(description="execute notebooks; their figures go to --figures")
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--figures", default="figures")
    args = parser.parse_args()
    for notebook in args.notebooks:
        print(f"running {notebook}", flush=True)
        execute(notebook, args.figures)


if __name__ == "__main__":
    main()

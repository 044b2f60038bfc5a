"""Re-execute the course notebooks headless and write their outputs in place.

    python scripts/run_notebooks.py                 # every notebook in notebooks/
    python scripts/run_notebooks.py notebooks/03_actor_critic_ppo.ipynb

Progress bars are turned off (TQDM_DISABLE=1) and execution timestamps are not recorded, so
re-running a notebook changes its file only where results change. Afterwards the outputs are
checked for errors and machine-specific paths (see scripts/check_notebooks.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_notebooks import check_notebook  # noqa: E402

ENV = {
    "TQDM_DISABLE": "1",
    "HF_HUB_OFFLINE": "1",
    "SDL_VIDEODRIVER": "dummy",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYTHONWARNINGS": "ignore",
}


def run(path: Path, timeout: int = 1200) -> float:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.update(ENV)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:  # on failure the notebook is written too, with the error, so you can read it
        seconds = time.perf_counter() - start
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        nbformat.write(nb, path)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    failed = 0
    for p in paths:
        print(f"executing {p.name} ...", flush=True)
        try:
            secs = run(p)
        except CellExecutionError as err:
            print(f"  FAILED: {str(err).strip().splitlines()[-1][:300]}")
            failed += 1
            continue
        problems = check_notebook(p)
        print(f"  {secs:6.1f} s  {'ok' if not problems else 'PROBLEMS:'}")
        for msg in problems:
            print("   -", msg)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

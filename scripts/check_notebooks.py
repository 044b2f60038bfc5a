"""Check committed notebooks: outputs present, no stored errors, no machine paths or noise.

    python scripts/check_notebooks.py        # exit 1 and a list of problems if any
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(/(?:root|home|tmp|work|Users|private/var|opt/conda)/[^\s\"'<>]*)|([A-Z]:\\\\Users\\\\)")
NOISE = [
    (re.compile(r"\d+it/s\]|s/it\]"), "a tqdm progress bar with timings"),
    (re.compile(r"XDG_RUNTIME_DIR"), "an SDL/XDG warning"),
    (re.compile(r"Warning:"), "a warning printed in an output"),
    (re.compile(r" at 0x[0-9A-Fa-f]{6,}"), "a memory address (changes every run; end the cell with `_ = ...`)"),
]


def _texts(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text = out.get("text", "")
            yield text if isinstance(text, str) else "".join(text)
        for mime, data in out.get("data", {}).items():
            if mime.startswith("text/") and mime != "text/html":
                yield data if isinstance(data, str) else "".join(data)
        if out.get("output_type") == "error":
            yield "\n".join(out.get("traceback", []))


def check_notebook(path: Path) -> list[str]:
    nb = json.loads(Path(path).read_text())
    problems = []
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    if code and not any(c.get("outputs") for c in code):
        problems.append("no outputs: execute it with scripts/run_notebooks.py before committing")
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell.get("source", ""))
        if MACHINE_PATH.search(src):
            problems.append(f"cell {i}: a machine-specific path in the source")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: an error is stored ({out.get('ename')})")
        for text in _texts(cell):
            if m := MACHINE_PATH.search(text):
                problems.append(f"cell {i}: a machine-specific path in the output ({m.group(0)[:60]})")
            for rx, what in NOISE:
                if rx.search(text):
                    problems.append(f"cell {i}: {what} in the output")
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        problems.append("metadata.kernelspec.name is not 'python3'")
    return problems


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    bad = 0
    for p in paths:
        for msg in check_notebook(p):
            print(f"{p.name}: {msg}")
            bad += 1
    print(f"checked {len(paths)} notebooks: {'ok' if not bad else f'{bad} problems'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

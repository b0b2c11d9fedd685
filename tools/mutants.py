"""Plant realistic bugs one at a time and check that the tests catch each.

    python tools/mutants.py            # every mutant, a caught/survived table
    python tools/mutants.py --list     # the mutants, without running them
    python tools/mutants.py --only NAME [--only NAME ...]

The committed tree (``git archive REF``, HEAD by default) is unpacked into a temporary folder;
each mutant replaces one exact snippet of one file there, runs the tests named for it
(``python -m pytest -x``, from that folder, so its own copy of the package is imported),
and puts the file back. A mutant whose snippet is not found exactly once is reported
``stale`` (the code moved on: update the list). Exit status 1 if any mutant survived or is
stale. The list lives in ``tools/mutant_list.py``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutant_list import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent


def unpack(ref: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def run_one(mutant: Mutant, tree: Path, timeout: float) -> tuple[str, float]:
    path = tree / mutant.file
    original = path.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        return "stale", 0.0
    path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    started = time.monotonic()
    try:
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *mutant.tests]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        try:
            result = subprocess.run(
                command, cwd=tree, env=env, capture_output=True, timeout=timeout, check=False
            )
            outcome = "caught" if result.returncode != 0 else "SURVIVED"
        except subprocess.TimeoutExpired:
            outcome = "caught (timeout)"
    finally:
        path.write_text(original, encoding="utf-8")
    return outcome, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD", help="the tree to mutate (default HEAD)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {m.file:34} {m.why}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="pa-mutants-") as tmp:
        tree = Path(tmp)
        unpack(args.ref, tree)
        for mutant in chosen:
            outcome, seconds = run_one(mutant, tree, args.timeout)
            rows.append((mutant, outcome, seconds))
            print(f"{outcome:16} {seconds:6.1f}s  {mutant.name}: {mutant.why}", flush=True)
    caught = sum(o.startswith("caught") for _, o, _ in rows)
    print(f"\n{caught} of {len(rows)} caught", flush=True)
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The API reference (``python -W error -m pdoc -o DIR`` with :data:`MODULES`, as .ci/run
builds it) documents every public module a user imports, and no private one. The optional
modules are named on the command line rather than in ``postman_async.__all__``, so that
``from postman_async import *`` needs no extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PUBLIC = ("jobs", "ratelimit_redis", "testing", "environments")
#: The command's modules: the package and its public submodules.
MODULES = ["postman_async", *(f"postman_async.{name}" for name in PUBLIC)]


def test_every_public_module_and_no_private_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pdoc", "-o", str(tmp_path), *MODULES],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert "postman_async.html" in pages
    for name in PUBLIC:
        assert f"postman_async/{name}.html" in pages, sorted(pages)
    assert [p for p in pages if "/_" in p] == []  # no private module

"""The package as a user installs it: the wheel, in a fresh virtual environment.

Slow on purpose, and marked so (``packaging``): building the wheel and a venv, and installing it
with pytest from the package index, takes about 10-30 s. One venv serves the whole session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "packaging: builds the wheel and installs it in a fresh venv (slow: 10-30 s, "
        "needs the package index)",
    )


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session")
def wheel_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel (with its runtime dependencies) and pytest: no
    pytest-asyncio, no extras. Its python."""
    work = tmp_path_factory.mktemp("packaging")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT)
    [wheel] = (work / "dist").glob("postman_async-*.whl")
    # No pip in the venv (ensurepip costs ~3 s of CPU): this pip installs into it.
    _run(sys.executable, "-m", "venv", "--without-pip", work / "venv")
    python = work / "venv" / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    _run(*pip, "--disable-pip-version-check", wheel, "pytest")
    return python

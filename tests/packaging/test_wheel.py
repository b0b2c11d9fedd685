"""Installing the package must not break another project's pytest: the ``pytest11`` entry
point loads our plugin into every pytest run, so importing it may need nothing beyond the
runtime dependencies (it once imported pytest-asyncio, a dev-only dependency: exit 3 in a
fresh venv)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging


def pytest_in(python: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_another_projects_plain_test_runs(wheel_python: Path, tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_sum():\n    assert 1 + 1 == 2\n")
    result = pytest_in(wheel_python, tmp_path, "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    missing = subprocess.run(
        [str(wheel_python), "-c", "import pytest_asyncio"], capture_output=True, timeout=60
    )
    assert missing.returncode != 0  # the point: pytest-asyncio is not there


def test_the_plugin_is_loaded_and_its_async_fixtures_say_what_they_need(
    wheel_python: Path, tmp_path: Path
) -> None:
    (tmp_path / "test_uses.py").write_text(
        "def test_plain():\n"
        "    assert True\n\n"
        "def test_wants_the_simulator(postman_simulator):\n"
        "    pass\n"
    )
    listed = pytest_in(wheel_python, tmp_path, "--fixtures")
    assert "postman_simulator" in listed.stdout and "postman_client" in listed.stdout
    result = pytest_in(wheel_python, tmp_path, "-q")
    assert result.returncode == 1, result.stdout + result.stderr  # not 3: no crash
    assert "1 passed, 1 error" in result.stdout  # the fixture fails its test only
    assert "needs pytest-asyncio: pip install pytest-asyncio" in result.stdout

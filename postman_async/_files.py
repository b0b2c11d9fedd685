"""Files that hold personal data (reports, resume files, result sinks): written private to
their owner.

A retry report holds recipients, template values, the full message text and the creator's
email; a resume file and a result sink hold message IDs and results. They are created with
mode 0600 whatever the umask, and a file that already existed is made 0600 before anything
is written to it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import TextIO

#: Read and write for the owner only.
PRIVATE_MODE = 0o600


def open_private(path: str | os.PathLike[str], *, encoding: str = "utf-8") -> TextIO:
    """Open ``path`` for writing text, emptied, with mode 0600 (owner only).

    A new file is created 0600 (``os.open`` with that mode; the umask can only narrow it). A
    regular file that already existed is made 0600 first and only then emptied, so its old
    mode never applies to what is written now, and a file that cannot be made private (it
    belongs to another user) is refused with ``PermissionError`` and left as it was. A path
    that is not a regular file (``/dev/stdout``, a FIFO) is written as it is: its mode is not
    ours to change.

    Raises ``OSError`` if the file cannot be opened or made private.
    """
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if stat.S_IMODE(info.st_mode) != PRIVATE_MODE:
                try:
                    os.fchmod(fd, PRIVATE_MODE)
                except PermissionError as exc:
                    raise PermissionError(
                        exc.errno,
                        f"cannot make it private (mode 0600), so it is not written: {exc.strerror}",
                        os.fspath(path),
                    ) from exc
            os.ftruncate(fd, 0)
        return os.fdopen(fd, "w", encoding=encoding)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise

"""Failures of the output location (full disk, read-only, no permission, a file in the way) as one line
that names the path and the fix, instead of a traceback from deep inside a write."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from ssd.errors import SSDError


def storage_error(error: OSError, path: Path) -> SSDError:
    """The user's view of an OSError raised while writing below `path`."""
    where = Path(error.filename) if error.filename else path
    writing = f" (writing {where})" if where != path else ""
    elsewhere = "pass output_dir=<a writable folder>"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return SSDError(
            f"no space left on the device holding {path}{writing}: free some space, then rerun the "
            f"same command; finished samples are kept and the job resumes after them"
        )
    if error.errno == errno.EROFS:
        return SSDError(f"cannot write {where}: it is on a read-only file system: {elsewhere}")
    if error.errno in (errno.EACCES, errno.EPERM):
        return SSDError(f"cannot write {where}: {error.strerror or 'permission denied'}: {elsewhere}")
    if error.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), where)
        return SSDError(
            f"cannot create the run folder {path}: {blocker} is a file, not a folder: move it, or {elsewhere}"
        )
    return SSDError(f"cannot write {where} ({error.strerror or type(error).__name__}): {elsewhere}")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing below `path` into a one-line SSDError."""
    try:
        yield
    except OSError as e:
        raise storage_error(e, path) from None

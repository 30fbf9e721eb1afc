"""One cgroup per sandboxed program, where the machine lets us write cgroups (as root, usually).

It gives what rlimits cannot: a cap on the processes (pids.max) and memory (memory.max, or v1's
memory.limit_in_bytes) of the whole program, children and tmpfs pages included, and a kill that no
process can leave (cgroup v2's cgroup.kill; else SIGKILL to every member until none is left, which
terminates because pids.max bounds the forking). Works on pure cgroup v2 and on hybrid v1/v2 machines
(v2 mounted at /sys/fs/cgroup/unified): each hierarchy is used if writable, and `describe()` says which.
Groups are created under the harness's own group of each hierarchy, so its own limits still apply.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")


def _own_paths() -> dict[str, str]:
    """controller ('' for v2) -> this process's group path, from /proc/self/cgroup."""
    paths = {}
    with suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
    return paths


def _hierarchies() -> dict[str, Path]:
    """What to create a group in: 'v2' (for kill, and pids/memory on pure v2), 'pids', 'memory' (v1)."""
    own = _own_paths()
    found: dict[str, Path] = {}
    if (ROOT / "cgroup.controllers").exists():
        found["v2"] = ROOT / own.get("", "/").lstrip("/")
        return found
    if (ROOT / "unified" / "cgroup.controllers").exists():
        found["v2"] = ROOT / "unified" / own.get("", "/").lstrip("/")
    for c in ("pids", "memory"):
        if (ROOT / c / "cgroup.procs").exists():
            found[c] = ROOT / c / own.get(c, "/").lstrip("/")
    return found


class Cgroup:
    """The groups of one program (one per hierarchy); `procs` are the files its launcher joins."""

    def __init__(self, name: str, pids_max: int, memory_bytes: int) -> None:
        self.dirs: list[Path] = []
        self.limits: dict[str, Any] = {}
        self.kill_file: Path | None = None
        for kind, parent in _hierarchies().items():
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            self.dirs.append(path)
            if kind == "v2":
                if (path / "cgroup.kill").exists():
                    self.kill_file = path / "cgroup.kill"
                self._limit(path / "pids.max", pids_max, "pids_max")
                self._limit(path / "memory.max", memory_bytes, "memory_max")
                self._limit(path / "memory.swap.max", 0, "memory_swap_max")
            elif kind == "pids":
                self._limit(path / "pids.max", pids_max, "pids_max")
            else:
                self._limit(path / "memory.limit_in_bytes", memory_bytes, "memory_max")

    def _limit(self, file: Path, value: int, key: str) -> None:
        with suppress(OSError):
            file.write_text(str(value))
            self.limits[key] = value

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def members(self) -> list[int]:
        """Processes in the groups and in any group below them."""
        pids: set[int] = set()
        for d in self.dirs:
            for procs in d.rglob("cgroup.procs"):
                with suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs.read_text().split())
        return sorted(pids)

    def kill(self) -> int:
        """SIGKILL every member (without waiting); how many there were."""
        found = self.members()
        if self.kill_file is not None:
            with suppress(OSError):
                self.kill_file.write_text("1")
                return len(found)
        for pid in found:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return len(found)

    def empty(self, attempts: int = 2000) -> bool:
        """Kill members again until none is left (a fork bomb may still be forking: pids.max bounds it)."""
        for i in range(attempts):
            left = self.members()
            if not left:
                return True
            for pid in left:
                with suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.0005 * min(i + 1, 10))
        return False

    def peak(self) -> dict[str, int]:
        """Peak processes and memory of the program, where the kernel counts them."""
        out = {}
        for d in self.dirs:
            for file, key in (("pids.peak", "pids_peak"), ("memory.peak", "memory_peak")):
                with suppress(OSError, ValueError):
                    out[key] = int((d / file).read_text())
            with suppress(OSError, ValueError):
                out["memory_peak"] = int((d / "memory.max_usage_in_bytes").read_text())
        return out

    def remove(self) -> None:
        for d in self.dirs:
            _rmdir(d)

    def describe(self) -> dict[str, Any]:
        kill = "cgroup.kill" if self.kill_file is not None else "signal each member"
        return {"cgroup": str(self.dirs[0].name), "cgroup_kill": kill, **self.limits}


def _rmdir(path: Path) -> None:
    """Remove a group and the (empty) groups below it, e.g. those of a harness that was killed."""
    with suppress(OSError):
        for sub in path.iterdir():
            if sub.is_dir():
                _rmdir(sub)
    for i in range(100):  # the last members may take a moment to be reaped
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.0005 * min(i + 1, 10))


def sweep(prefix: str, alive: Any) -> list[str]:
    """Kill what is left in, and remove, the groups `<prefix><pid>-*` (below this process's own) of
    harnesses no longer `alive(pid)`: a harness killed by SIGKILL never removed its own."""
    removed = []
    for parent in _hierarchies().values():
        with suppress(OSError):
            for path in parent.glob(f"{prefix}*"):
                pid = path.name[len(prefix) :].partition("-")[0]
                if pid.isdigit() and path.is_dir() and not alive(int(pid)):
                    with suppress(OSError):
                        (path / "cgroup.kill").write_text("1")
                    _rmdir(path)
                    removed.append(str(path))
    return removed


def create(name: str, pids_max: int, memory_bytes: int) -> Cgroup | None:
    """A fresh cgroup for one program, or None where no hierarchy is writable (not root, no delegation)."""
    group = Cgroup(name, pids_max, memory_bytes)
    return group if group.dirs else None

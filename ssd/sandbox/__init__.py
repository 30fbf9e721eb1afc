"""Running model-written code: a verdict the candidate cannot reach, and a program that cannot get out.

What it promises. A candidate program (HumanEval, MBPP) never shares a process with its tests: it runs
in a sandbox (`serve.py`), executes the model's code, then only answers calls to its functions over two
pipes carrying plain data (`wire.py`). The benchmark's tests run in a trusted checker (`checker.py`) that
calls the candidate through proxies; the verdict is the checker's, and the expected values never enter
the sandbox. After every program everything it started is killed (`cage.py`) and what survived is
counted. Entry point: `grade(jobs, ...)` in `grader.py`; `mechanism()` picks the isolation.

What each mode cannot guarantee:
- `bwrap` (bubblewrap; any user): new user, pid, network, ipc, uts and mount namespaces, a read-only view
  of the system and size-limited tmpfs. Without root, no memory cap over all its processes together
  (each has RLIMIT_AS); kernel exploits are out of scope.
- `ns` (root only): the same namespaces built by `launcher.py` itself; kernel exploits are out of scope.
- `none` (only when asked for): rlimits, a minimal environment and a timeout, nothing else. The program
  can read and change what the harness's user can (without root: its code, results and answer keys),
  use the network, kill that user's processes, and leave daemons out of the harness's sight by killing
  its launcher. Its pass@1 is not a contained result. What keeps the verdict itself out of its reach
  (scripts run from memory and checked on disk, a sealed spec, a socket for the verdict, an undumpable
  checker) is in `seal.py`.
As root every mode also runs each program under a uid of its own and, where cgroups are writable, in a
cgroup of its own (pids.max, a memory cap, cgroup.kill).

`launcher.py`, `serve.py`, `checker.py` and `wire.py` are standard-library scripts run from the copies
`seal.py` reads into memory at import (`python -I -S -c`; serve.py and wire.py as files in the sandbox);
they import nothing from this package.
"""

from ssd.sandbox.grader import ISOLATIONS, TAMPERED, Job, Limits, Mechanism, Result, grade, mechanism

__all__ = ["ISOLATIONS", "TAMPERED", "Job", "Limits", "Mechanism", "Result", "grade", "mechanism"]

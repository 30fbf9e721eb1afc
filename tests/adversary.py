"""The driver: grades every adversarial candidate (tests/adversary_cases.py) in one mode.

`python tests/adversary.py ISOLATION OUT.json KEY [--only-harmless]` (tests/sandbox_modes.py starts it
under a hard cap of its own: a cgroup with pids.max and a memory limit, or RLIMIT_NPROC for a dedicated
uid) writes, per case, the verdict, the candidate's stdout and the details, plus what the driver saw
from the outside: the canary file, connections to a localhost listener, SysV IPC and /dev/shm left
behind. `--hang ISOLATION` grades one sleeping candidate, for a test that kills this process meanwhile;
`--start ISOLATION` only starts the sandbox, as a harness does first (removing stale sandbox folders).
Nothing here needs more than the standard library and ssd.sandbox.grader.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path

from adversary_cases import ADD, SECRET, cases


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def sysv_keys() -> list[str]:
    keys = []
    for kind in ("shm", "msg", "sem"):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        keys += [
            f"{kind}:{line.split()[0]}" for line in lines if line.split()[0] in ("21968", "21969", "21970")
        ]
    return keys


def main(isolation: str | None, out: str, key: str, only_harmless: bool) -> int:
    from ssd.errors import SSDError
    from ssd.sandbox.grader import HERE, Job, Limits, grade, mechanism

    isolation = None if isolation == "default" else isolation
    try:
        mechanism(isolation)
    except SSDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    os.environ["SSD_ADVERSARY_SECRET"] = SECRET
    folder = Path(tempfile.mkdtemp(prefix="ssd-adversary-"))
    folder.chmod(0o755)
    canary = folder / "canary.txt"
    canary.write_text("alive")
    listener = Listener()
    try:
        ctx = {"canary": str(canary), "key": key, "port": str(listener.port), "harness": str(os.getpid())}
        ctx["checker"] = str(HERE / "checker.py")  # of the copy this driver runs from (sandbox_modes.py)
        catalogue = {n: c for n, c in cases(ctx).items() if not (only_harmless and c.harmful)}
        limits = Limits(memory_bytes=512 << 20, tmpfs_bytes=16 << 20, file_bytes=8 << 20, nproc=32)
        names, results = [], []
        # The ones that hang, with a short clock; the rest at once, with a generous one for what should end
        # soon; then, one at a time, those that change files (their effect on what is graded next shows).
        batches = [([n for n, c in catalogue.items() if c.hangs], 2.0, 6)]
        batches.append(([n for n, c in catalogue.items() if not c.hangs and not c.last], 30.0, 6))
        batches += [([n], 30.0, 1) for n, c in catalogue.items() if c.last]
        for batch, timeout, workers in batches:
            jobs = [Job(catalogue[n].code, catalogue[n].tests, catalogue[n].remote) for n in batch]
            names += batch
            results += grade(jobs, timeout, workers=workers, limits=limits, isolation=isolation)
    finally:
        listener.close()
    report = {
        "cases": {
            n: {
                "status": r.status,
                "stdout": r.stdout[-4000:],
                "stderr": r.stderr[-1000:],
                "details": r.details,
                "wall": round(r.wall_seconds, 3),
            }
            for n, r in zip(names, results, strict=True)
        },
        "canary": canary.read_text() if canary.exists() else None,
        "new_files": sorted(p.name for p in folder.iterdir() if p.name != "canary.txt"),
        "accepted": listener.accepted,
        "sysv": sysv_keys(),
        "shared_files": [
            p for p in ("/dev/shm", "/run/lock", "/var/tmp") if Path(p, "ssd-adversary-left").exists()
        ],
    }
    canary.unlink(missing_ok=True)
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    Path(out).write_text(json.dumps(report))
    return 0


def hang(isolation: str) -> None:
    """Grade one candidate that starts a daemon and sleeps; the test kills this process meanwhile."""
    from ssd.sandbox.grader import Job, grade

    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\ntime.sleep(1000)\n" + ADD
    )
    print("started", flush=True)
    grade([Job(code, "assert f(2, 3) == 5", ("f",))], 60.0, isolation=isolation)


if __name__ == "__main__":
    if sys.argv[1] == "--hang":
        hang(sys.argv[2])
    elif sys.argv[1] == "--start":  # what a harness does first (it sweeps stale sandbox folders)
        from ssd.sandbox.grader import mechanism

        mechanism(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:] == ["--only-harmless"]))

"""Start one candidate program inside the sandbox and, whatever it did, end everything it started.

`Cage.start` runs ssd/sandbox/launcher.py (which joins the program's cgroup, then execs bubblewrap or
builds the namespaces itself); `Cage.stop` kills, in this order of strength: the cgroup (cgroup.kill:
nothing in it can leave), the pid namespace's init (the kernel then kills every process of the
namespace, and none can leave it), under isolation `none` every descendant of the launcher (a subreaper:
the program's orphans stay below it) and, as root, every process of the sandbox uid, then the launcher's
process group. It then counts what is still alive where it looked (`survivors_scope`: cgroup members,
processes in the pid namespace or of the uid, the launcher's descendants) and records that number, 0
unless containment failed. Under `none` without root the launcher's descendants are all it can see: a
program that kills its launcher (it runs as the same user) takes its other processes out of sight, and
then `survivors` is null, with the reason in `survivors_unseen`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from ssd.sandbox import cgroups, seal

MIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
RO_BINDS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


def ro_binds(python: str) -> list[str]:
    """What the sandbox sees of the host, read-only: the system and the interpreter's prefix."""
    prefix = str(Path(os.path.realpath(python)).parent.parent)  # e.g. /usr, /opt/python3.11
    return [*RO_BINDS, *([prefix] if not prefix.startswith("/usr") else [])]


def bwrap_argv(bwrap: str, python: str, hostdir: str, tmpfs_bytes: int, info_fd: int) -> list[str]:
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    argv += ["--info-fd", str(info_fd)]
    for path in ro_binds(python):
        argv += ["--ro-bind-try", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm"]
    argv += ["--size", str(tmpfs_bytes), "--tmpfs", "/tmp", "--size", str(tmpfs_bytes), "--tmpfs", "/work"]
    argv += ["--ro-bind", hostdir, "/srv", "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/work"]
    for key, value in {**MIN_ENV, "HOME": "/work", "TMPDIR": "/tmp"}.items():
        argv += ["--setenv", key, value]
    return argv


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _identity(pid: str, _: Any = None) -> tuple[str | None, int]:
    """(pid namespace, uid) of a process."""
    uid = os.stat(f"/proc/{pid}").st_uid
    try:
        return os.readlink(f"/proc/{pid}/ns/pid"), uid
    except OSError:
        return None, uid


def uid_members(uid: int) -> list[int]:
    return [pid for pid, owner in _procs(lambda p, _: os.stat(f"/proc/{p}").st_uid) if owner == uid]


def descendants(root: int) -> list[int]:
    """Live processes below `root` (not itself), by the parent each has in /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for pid, parent in _procs(lambda _, stat: int(stat[1])):
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _procs(key: Any) -> list[tuple[int, Any]]:
    """(pid, key(pid, fields of /proc/PID/stat after the name)) of every live process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
            value = key(entry, stat)
        except (OSError, IndexError, ValueError):
            continue
        if stat[0] not in (b"Z", b"X"):
            found.append((int(entry), value))
    return found


class Cage:
    """One running candidate program and what it takes to end it."""

    def __init__(self, mech: Any, limits: Any, hostdir: str, uid: int | None, name: str) -> None:
        self.mech, self.limits, self.hostdir, self.uid = mech, limits, hostdir, uid
        self.cgroup = cgroups.create(name, limits.nproc, limits.memory_bytes + 3 * limits.tmpfs_bytes)
        self.init_pidfd: int | None = None
        self.ns: str | None = None
        self.info_r: int | None = None
        self.proc: subprocess.Popen | None = None
        self.stopped = False

    def start(self, server_argv: list[str], pass_fds: tuple[int, ...], out: Any, err: Any) -> None:
        mech, limits = self.mech, self.limits
        rlimits = [
            ("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + 1),
            ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
            ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
            ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
            ("RLIMIT_CORE", 0, 0),
        ]
        if self.uid is not None:  # as root: the sandbox uid is this program's alone, so NPROC counts it
            rlimits.append(("RLIMIT_NPROC", limits.nproc, limits.nproc))
        info_r, info_w = os.pipe() if mech.isolation != "none" else (None, None)
        self.info_r = info_r
        spec: dict[str, Any] = {
            "mode": mech.isolation,
            "cgroups": self.cgroup.procs if self.cgroup else [],
            "rlimits": rlimits,
            "uid": self.uid,
            "env": {**MIN_ENV, "HOME": "/work", "TMPDIR": "/tmp"},
            "cwd": "/",
            "info_fd": info_w,
            "root": os.path.join(self.hostdir, "root"),
            "hostdir": self.hostdir,
            "binds": ro_binds(mech.python),
            "tmpfs_bytes": limits.tmpfs_bytes,
            "harness": os.getpid(),
        }
        if mech.isolation == "bwrap":
            bwrap = bwrap_argv(mech.bwrap, mech.python, self.hostdir, limits.tmpfs_bytes, info_w)
            spec["argv"] = bwrap + ["--", *server_argv]
        elif mech.isolation == "ns":
            os.mkdir(spec["root"])
            spec["argv"] = server_argv
        else:  # none: the files stay where they are, the program works in a folder of its own
            work = os.path.join(self.hostdir, "work")
            os.mkdir(work, 0o700)
            if self.uid is not None:
                os.chown(work, self.uid, self.uid)
            spec["argv"] = [server_argv[0], "-I", os.path.join(self.hostdir, "serve.py"), *server_argv[3:]]
            spec["env"] = {**MIN_ENV, "HOME": work, "TMPDIR": work}
            spec["cwd"] = work
        fds = tuple(fd for fd in (*pass_fds, info_w) if fd is not None)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", seal.source("launcher.py"), json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.hostdir,
                env=MIN_ENV,
                start_new_session=True,
                pass_fds=fds,
            )
        finally:
            if info_w is not None:
                os.close(info_w)

    def find_init(self, wait: float) -> None:
        """The pid namespace's init, from the info fd (bwrap's --info-fd or the launcher's)."""
        if self.info_r is None:
            return
        data = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.info_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.info_r, 4096)
            if not chunk:
                break
            data += chunk
            with suppress(ValueError):
                pid = int(json.loads(data)["child-pid"])
                self.init_pidfd = _pidfd(pid)
                with suppress(OSError):
                    self.ns = os.readlink(f"/proc/{pid}/ns/pid")
                break
        os.close(self.info_r)
        self.info_r = None

    def stop(self) -> dict[str, Any]:
        """Kill everything the program started; what was used and what (if anything) survived."""
        if self.stopped:
            return {}
        self.stopped = True
        if self.proc is None:  # never started
            if self.info_r is not None:
                os.close(self.info_r)
            if self.cgroup is not None:
                self.cgroup.remove()
            return {"survivors": 0}
        self.find_init(wait=0.5 if self.proc.poll() is None else 0.0)
        found: dict[str, Any] = {}
        if self.init_pidfd is not None:  # the namespace dies with its init; the launcher reaps it and ends
            with suppress(OSError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            os.close(self.init_pidfd)
            launcher = _pidfd(self.proc.pid)
            if launcher is not None:
                select.select([launcher], [], [], 1.0)
                os.close(launcher)
        if self.cgroup is not None:
            found["cgroup_members_killed"] = self.cgroup.kill()
        tree = self._end_tree() if self.mech.isolation == "none" else {}
        with suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.empty()
        if self.uid is not None and self.mech.isolation == "none":
            found["uid_processes_killed"] = _kill_all(lambda: uid_members(self.uid))
        survivors = self._survivors() + tree.pop("left", 0)
        if self.cgroup is not None:
            found.update(self.cgroup.peak())
            self.cgroup.remove()
        found.update(tree)
        found["survivors"] = None if "survivors_unseen" in tree else survivors
        return found

    def _end_tree(self) -> dict[str, Any]:
        """Under `none`: kill the launcher's descendants (the program's processes: the launcher is their
        subreaper, so orphans stay below it) and count those left. A launcher killed before the harness
        stopped it (the program runs as its user, without root) took them out of sight: say so."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:  # ended: its pid may be reused, so no walk from it
            if code < 0 and self.uid is None and self.cgroup is None:
                return {
                    "survivors_unseen": f"the launcher was killed (signal {-code}) before the harness "
                    f"stopped it: what the program started may live on, out of the harness's sight"
                }
            return {}
        pid = self.proc.pid  # alive or a zombie not yet reaped: still this harness's child
        killed = _kill_all(lambda: descendants(pid))
        return {"descendants_killed": killed, "left": len(descendants(pid))}

    def _survivors(self) -> int:
        """Processes of this program still alive a moment after the kill (0 unless containment failed)."""
        for i in range(200):
            left = set(self.cgroup.members()) if self.cgroup is not None else set()
            if self.ns is not None or self.uid is not None:
                for pid, (ns, uid) in _procs(_identity):
                    if (self.ns is not None and ns == self.ns) or (self.uid is not None and uid == self.uid):
                        left.add(pid)
            if not left:
                return 0
            time.sleep(0.0005 * min(i + 1, 10))
        return len(left)

    def describe(self) -> dict[str, Any]:
        how = ["cgroup"] if self.cgroup is not None else []
        how += ["pid namespace init"] if self.mech.isolation != "none" else []
        how += ["launcher's descendants"] if self.mech.isolation == "none" else []
        how += ["process group"] + (["sandbox uid"] if self.uid is not None else [])
        nproc = "cgroup pids.max" if self.cgroup and "pids_max" in self.cgroup.limits else None
        nproc = nproc or ("RLIMIT_NPROC, own uid" if self.uid is not None else None)
        nproc = nproc or ("RLIMIT_NPROC, own user namespace" if self.mech.isolation == "bwrap" else "none")
        scope = [k for k, on in SCOPES.items() if on(self)]
        out = {"kill": how, "nproc_cap": nproc, "nproc": self.limits.nproc, "survivors_scope": scope}
        if self.cgroup is not None:
            out.update(self.cgroup.describe())
        if self.mech.isolation != "none":
            out["tmpfs_bytes"] = self.limits.tmpfs_bytes
        return out


# Where `survivors` looks for what outlived a program, when each applies.
SCOPES = {
    "cgroup": lambda cage: cage.cgroup is not None,
    "pid namespace": lambda cage: cage.mech.isolation != "none",
    "sandbox uid": lambda cage: cage.uid is not None,
    "launcher's descendants": lambda cage: cage.mech.isolation == "none",
}


def _kill_all(members: Any) -> int:
    killed: set[int] = set()
    for _ in range(200):
        pids = members()
        if not pids:
            break
        for pid in pids:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.005)
    return len(killed)

"""Starts one sandboxed program: stdlib only, run from the harness's in-memory copy of this file as
`python -I -S -c <this file> SPEC_JSON` (no preexec_fn).

In order: join the program's cgroups (while still the harness's user), then per mode
- "bwrap" / "none": fork; the child sets the rlimits, drops to the sandbox uid (as root) and execs
  bubblewrap or the program; the launcher stays, as a subreaper, until every orphan is reaped. It dies
  with the harness (PR_SET_PDEATHSIG); under "none", where nothing else would end them, it first kills
  every process below it (the program's, orphans included);
- "ns" (root without bubblewrap): unshare mount, pid, network, ipc and uts namespaces and fork the new pid
  namespace's init. The init builds a root of read-only binds (/usr, /etc, /lib*, the interpreter),
  /srv (the program's files, read-only), size-limited tmpfs /work, /tmp and /dev/shm, a fresh /proc and
  a few device nodes; pivots into it and forks the program under the sandbox uid. When the program ends
  the init exits, and the kernel kills everything left in its pid namespace. The launcher writes
  {"child-pid": init} to the info fd (as bubblewrap's --info-fd does) and exits with the program's status.
Exit status 125 with "ssd-sandbox: launch failed" on stderr: the sandbox itself could not be set up.
"""

import contextlib
import json
import os
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x20000,
    0x4000000,
    0x8000000,
    0x20000000,
    0x40000000,
)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1,
    2,
    4,
    8,
    32,
    4096,
    16384,
    1 << 18,
)
MNT_DETACH = 2
DEVICES = ("null", "zero", "full", "random", "urandom")


def _libc():
    import ctypes  # imported before the uid changes: the new uid may not read the interpreter's prefix

    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        if getattr(libc, name)(*args) != 0:
            raise OSError(ctypes.get_errno(), f"{name}{args[:2]} failed: {os.strerror(ctypes.get_errno())}")

    return call


def _drop(spec):
    import resource  # noqa: I001 - before the uid changes (see _libc)

    for name, soft, hard in spec["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])


def _mount(call, source, target, fstype, flags, data=None):
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    call("mount", enc[0], enc[1], enc[2], flags, enc[3])


def _build_root(call, spec):
    """The program's file system under spec["root"], then pivot into it."""
    root, size, uid = spec["root"], spec["tmpfs_bytes"], spec["uid"] or 0
    _mount(call, None, "/", None, MS_REC | MS_PRIVATE)
    _mount(call, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for src in spec["binds"]:
        dest = root + src
        if os.path.islink(src):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.symlink(os.readlink(src), dest)
            continue
        if not os.path.isdir(src) or os.path.exists(dest):
            continue
        os.makedirs(dest)
        _mount(call, src, dest, None, MS_BIND | MS_REC)
        _mount(call, None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.makedirs(root + "/srv")
    _mount(call, spec["hostdir"], root + "/srv", None, MS_BIND)
    _mount(call, None, root + "/srv", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path, mode in (("/work", "0700"), ("/tmp", "1777"), ("/dev/shm", "1777")):
        os.makedirs(root + path)
        opts = f"size={size},mode={mode},uid={uid},gid={uid}"
        _mount(call, "tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    for name in DEVICES:
        with open(f"{root}/dev/{name}", "w"):
            pass
        _mount(call, f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    os.makedirs(root + "/proc")
    _mount(call, "proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(root)
    call("pivot_root", b".", b".")
    call("umount2", b".", MNT_DETACH)
    os.chdir("/")
    _mount(call, None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _namespaced(spec):
    call = _libc()
    call("prctl", 1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: the launcher dies with the harness
    call("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    init = os.fork()
    if init:
        os.write(spec["info_fd"], json.dumps({"child-pid": init}).encode())
        os.close(spec["info_fd"])
        os._exit(os.waitstatus_to_exitcode(os.waitpid(init, 0)[1]) & 0xFF)
    try:  # pid 1 of the new namespace
        os.close(spec["info_fd"])
        call("prctl", 1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: the init dies with the launcher
        _build_root(call, spec)
        program = os.fork()
        if program == 0:
            _launch(spec, "/work")
        while True:
            pid, status = os.wait()
            if pid == program:
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    except BaseException as e:
        _fail(e)


def _launch(spec, cwd):
    try:
        call = _libc()
        _drop(spec)
        call("prctl", 1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL (after the uid change, which resets it)
        os.chdir(cwd)
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except BaseException as e:
        _fail(e)


def _fail(e):
    os.write(2, f"ssd-sandbox: launch failed: {type(e).__name__}: {e}\n".encode())
    os._exit(125)


def _reap(program):
    """Wait for the program and for every orphan handed to us (we are a subreaper), then exit with the
    program's status: bubblewrap's outer process may exit before its init, which would otherwise end
    up a zombie of the machine's init, still counted against the sandbox uid's RLIMIT_NPROC."""
    code = 125
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(code)
        if pid == program:
            code = os.waitstatus_to_exitcode(status) & 0xFF


def _below():
    """Live processes below this one, by the parent each has in /proc/PID/stat."""
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] not in (b"Z", b"X"):
                parents[int(entry)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    found, level = set(), {os.getpid()}
    while level:
        level = {pid for pid, parent in parents.items() if parent in level} - found
        found |= level
    return found


def _end(signum, frame):
    """The harness died (PR_SET_PDEATHSIG) or asked: kill everything below, then end."""
    for _ in range(200):
        below = _below()
        if not below:
            break
        for pid in below:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    os._exit(128 + signum)


def main():
    spec = json.loads(sys.argv[1])
    try:
        for procs in spec["cgroups"]:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        if spec["mode"] == "ns":
            _namespaced(spec)
        call = _libc()
        # The launcher dies with the harness: under none, by SIGTERM, to end what is below it first
        death = signal.SIGTERM if spec["mode"] == "none" else signal.SIGKILL
        signal.signal(signal.SIGTERM, _end)
        call("prctl", 1, death, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != spec["harness"]:  # the harness died before that
            _end(death, None)
        call("prctl", 36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of the program come to us
        program = os.fork()
        if program == 0:
            _launch(spec, spec["cwd"])
        if spec["info_fd"] is not None:
            os.close(spec["info_fd"])
        _reap(program)
    except BaseException as e:
        _fail(e)


if __name__ == "__main__":
    main()

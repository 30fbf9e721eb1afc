"""Adversarial candidates for the code sandbox: over 40 programs, by category (tests/adversary.py grades
them, tests/sandbox_modes.py in every mode this machine can create; the forgeries are in
tests/adversary_forgeries.py).

Every case is graded by `assert f(2, 3) == 5` against the candidate's `f` (an addition), unless it says
otherwise. A case expects "pass" (a correct program, whatever else it does) or "fail" (a forgery or a
wrong answer). Probes print a marker (LEAK, READ, CONNECTED, ...) when they get through; the suite
asserts no marker appears.
"""

from __future__ import annotations

from pathlib import Path

from adversary_forgeries import ADD, MARKERS, SECRET, WRONG, Case, forgeries

__all__ = ["ADD", "MARKERS", "SECRET", "Case", "cases"]


def cases(ctx: dict[str, str]) -> dict[str, Case]:
    """The catalogue; `ctx` holds host paths and the listener's port the probes aim at."""
    canary, key, port, harness = ctx["canary"], ctx["key"], ctx["port"], ctx["harness"]
    probe = "import os, sys, glob, signal, socket, ctypes, time, subprocess\n"
    return {
        # --- controls: correct programs pass, whatever else they do -----------------------------------
        "ok_add": Case("control", ADD, "pass", harmful=False),
        "ok_closes_stdout": Case(
            "control", "import os, sys\nsys.stdout.close()\nos.close(1)\n" + ADD, "pass", harmful=False
        ),
        "ok_closes_stdin_stderr": Case(
            "control",
            "import os, sys\nos.close(0)\nsys.stderr.close()\nos.close(2)\n" + ADD,
            "pass",
            harmful=False,
        ),
        "ok_prints": Case("control", "print('hello ' * 100)\n" + ADD, "pass", harmful=False),
        "ok_counter_and_tuples": Case(
            "control",
            "import collections\ndef f(s):\n    return collections.Counter(s), tuple(s), {1: b'x'}, 2j\n",
            "pass",
            tests="c, t, d, z = f('aab')\nassert c == {'a': 2, 'b': 1} and t == ('a', 'a', 'b')\n"
            "assert d == {1: b'x'} and z == 2j",
            harmful=False,
        ),
        "ok_threads_and_child": Case(
            "control",
            "import subprocess, sys, threading\n"
            "def f(a, b):\n    out = []\n    t = threading.Thread(target=lambda: out.append(a + b))\n"
            "    t.start(); t.join()\n"
            "    r = subprocess.run([sys.executable, '-c', 'print(1)'], capture_output=True, text=True)\n"
            "    return out[0] + int(r.stdout) - 1\n",
            "pass",
            harmful=False,
        ),
        "ok_uses_tmp_and_work": Case(
            "control",
            "import tempfile\ndef f(a, b):\n    with tempfile.NamedTemporaryFile('w+') as t:\n"
            "        t.write(str(a))\n        t.flush()\n        open('y', 'w').write(str(b))\n"
            "        return int(open(t.name).read()) + int(open('y').read())\n",
            "pass",
            harmful=False,
        ),
        "ok_generator_wrapped": Case(
            "control",
            "def f(a, b):\n    return (x for x in [a + b])\n",
            "pass",
            tests="assert tuple(f(2, 3)) == (5,)",
            harmful=False,
        ),
        "ok_exception_expected": Case(
            "control",
            "def f(x):\n    raise ValueError('no')\n",
            "pass",
            tests="try:\n    f(1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError",
            harmful=False,
        ),
        **forgeries(ctx),
        # --- the answer key and the harness's secrets --------------------------------------------------
        "read_answer_key": Case(
            "answer key",
            probe + f"def f(a, b):\n    try:\n        open({key!r}).read(100)\n        print('READ')\n"
            "    except OSError:\n        pass\n    return a + b\n",
            "pass",
            harmful=False,
            user_none="reads your files",
        ),
        "walk_for_answer_key": Case(
            "answer key",
            probe + "n = 0\nfor root, dirs, files in os.walk('/'):\n    n += 1\n    if n > 20000: break\n"
            "    dirs[:] = [d for d in dirs if root != '/' or d not in ('usr', 'proc', 'sys', 'lib')]\n"
            "    if 'test.jsonl' in files or 'canonical_solution' in root:\n        print('FOUND', root)\n"
            + ADD,
            "pass",
        ),
        "env_and_proc_environ": Case(
            "leak",
            probe + f"s = {SECRET!r}\nif any(s in v for v in os.environ.values()):\n    print('LEAK env')\n"
            "for p in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):\n"
            "    try:\n        d = open(p, 'rb').read()\n    except OSError:\n        continue\n"
            "    if s.encode() in d or b'checker.py' in d or b'pytest' in d:\n        print('LEAK', p)\n"
            + ADD,
            "pass",
        ),
        "see_harness_processes": Case(
            "leak",
            probe + "for p in glob.glob('/proc/[0-9]*/status'):\n    try:\n"
            "        if 'Uid:\\t0' in open(p).read() and os.getuid() != 0:\n            pass\n"
            "    except OSError:\n        pass\n"
            "if len(glob.glob('/proc/[0-9]*')) > 8:\n    print('FOUND many')\n" + ADD,
            "pass",
        ),
        # --- processes: bombs, daemons, survivors ------------------------------------------------------
        "fork_bomb": Case(
            "processes",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            "fail",
            hangs=True,
        ),
        "fork_bomb_in_call": Case(
            "processes",
            "import os\ndef f(a, b):\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n",
            "fail",
            hangs=True,
        ),
        "thread_bomb": Case(
            "processes",
            "import threading, time\ndef f(a, b):\n    while True:\n        try:\n"
            "            threading.Thread(target=time.sleep, args=(100,)).start()\n"
            "        except RuntimeError:\n            pass\n",
            "fail",
            hangs=True,
        ),
        "double_fork_daemon": Case(
            "processes",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        time.sleep(1000)\n    os._exit(0)\n" + ADD,
            "pass",
            harmful=False,
        ),
        "escape_by_killing_the_launcher": Case(
            "processes",
            "import os, signal, time\nlauncher = os.getppid()\nif os.fork() == 0:\n    os.setsid()\n"
            "    os.closerange(3, 1024)\n"
            "    try:\n        os.kill(launcher, signal.SIGKILL)\n    except OSError:\n        pass\n"
            "    time.sleep(1000)\ntime.sleep(0.5)\n" + WRONG,
            "fail",
            harmful=False,
            user_none="a process that kills its launcher leaves what the harness can see",
        ),
        "children_outlive_timeout": Case(
            "processes",
            "import os, signal, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
            "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "        signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "        os.setpgid(0, 0)\n        time.sleep(1000)\n"
            "def f(a, b):\n    time.sleep(1000)\n",
            "fail",
            hangs=True,
        ),
        "setsid_children_then_exit": Case(
            "processes",
            "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
            "        time.sleep(1000)\n" + ADD,
            "pass",
            harmful=False,
        ),
        "infinite_loop_at_load": Case("processes", "while True:\n    pass\n", "fail", hangs=True),
        "sleep_in_call": Case(
            "processes", "import time\ndef f(a, b):\n    time.sleep(1000)\n", "fail", hangs=True
        ),
        # --- memory and disk ---------------------------------------------------------------------------
        "memory_hog": Case("memory", "x = bytearray(64 * 1024**3)\n" + ADD, "fail"),
        "memory_split_across_children": Case(
            "memory",
            "import os, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
            "        try:\n            x = bytearray(200 * 1024**2)\n"
            "            x[::4096] = b'x' * len(x[::4096])\n"
            "        except MemoryError:\n            os._exit(1)\n"
            "        time.sleep(1000)\n    kids.append(pid)\n"
            "time.sleep(1.0)\ndef f(a, b):\n    return a + b\n",
            "pass",
        ),
        "disk_fill_work": Case("disk", _fill("'.'"), "pass"),
        "disk_fill_tmp": Case("disk", _fill("'/tmp'"), "pass"),
        "disk_fill_dev_shm": Case("disk", _fill("'/dev/shm'"), "pass"),
        "print_gigabytes": Case(
            "disk", "import sys\nwhile True:\n    sys.stdout.write('x' * 1000000)\n" + ADD, "fail"
        ),
        # --- the harness and the machine -----------------------------------------------------------------
        "kill_parent_and_everyone": Case(
            "signals",
            probe + f"for pid in (os.getppid(), 1, {harness}, -1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError:\n        pass\n" + ADD,
            "pass",
        ),
        "kill_every_visible_pid": Case(
            "signals",
            probe + "me = os.getpid()\nfor p in glob.glob('/proc/[0-9]*'):\n    pid = int(p[6:])\n"
            "    if pid in (me, os.getppid(), 1):\n        continue\n"
            "    try:\n        os.kill(pid, signal.SIGSTOP)\n"
            "        print('KILLED', pid)\n    except OSError:\n        pass\n" + ADD,
            "pass",
        ),
        "ptrace_parent": Case(
            "signals",
            probe + "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"for pid in {{os.getppid(), {harness}}} - {{1}}:\n    if libc.ptrace(16, pid, 0, 0) == 0:\n"
            "        print('ATTACHED', pid)\n" + ADD,
            "pass",
        ),
        "network_localhost": Case(
            "network",
            probe + f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
            "    print('CONNECTED')\nexcept OSError:\n    pass\n" + ADD,
            "pass",
        ),
        "write_and_delete_outside": Case(
            "files",
            probe + f"for path in ({canary!r}, {str(Path(canary).parent / 'new')!r}):\n    try:\n"
            "        open(path, 'a').write('x')\n        print('WROTE', path)\n"
            "    except OSError:\n        pass\n"
            f"try:\n    os.remove({canary!r})\n    print('WROTE removed')\nexcept OSError:\n    pass\n" + ADD,
            "pass",
        ),
        "sysv_shared_memory": Case(
            "ipc",
            probe + "libc = ctypes.CDLL(None, use_errno=True)\n"
            "shm = libc.shmget(0x55D0, 1 << 20, 0o1666)\nq = libc.msgget(0x55D1, 0o1666)\n"
            "s = libc.semget(0x55D2, 1, 0o1666)\n" + ADD,
            "pass",
        ),
        "files_in_shared_folders": Case(
            "ipc",
            probe + "for d in ('/dev/shm', '/run/lock', '/var/tmp', '/tmp'):\n    try:\n"
            "        open(d + '/ssd-adversary-left', 'w').write('x')\n    except OSError:\n        pass\n"
            + ADD,
            "pass",
        ),
        "cgroup_and_namespace_escape": Case(
            "escape",
            probe + "for p in glob.glob('/sys/fs/cgroup/**/cgroup.procs', recursive=True)[:50]:\n    try:\n"
            "        open(p, 'w').write(str(os.getpid()))\n        print('MOVED', p)\n    except OSError:\n"
            "        pass\nfor p in ('/proc/1/root/etc/shadow', '/proc/1/cwd/x'):\n    try:\n"
            "        open(p).read(1)\n        print('ESCAPED', p)\n    except OSError:\n        pass\n"
            "try:\n    os.setuid(0)\n    print('ESCAPED setuid')\nexcept OSError:\n    pass\n" + ADD,
            "pass",
        ),
    }


def _fill(folder: str) -> str:
    """Write 1 MiB files until the disk says no; print how much; then be correct (the cap is checked)."""
    return (
        f"n = 0\ntry:\n    while n < (64 << 20):\n        with open({folder} + '/big%d' % n, 'wb') as out:\n"
        "            out.write(b'x' * (1 << 20))\n        n += 1 << 20\nexcept OSError:\n    pass\n"
        "print('WRITTEN', n)\n" + ADD
    )

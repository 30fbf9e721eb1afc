"""What an adversarial case is, and the forgeries: candidates that try to pass without solving the task
(tests/adversary_cases.py holds the rest of the catalogue).

Those impossible by construction (a printed nonce, an always-equal object, a rewritten `check`, garbage on
the protocol pipes) fail in every mode. Those that go through the harness's side — its checker's
/proc/PID/fd entries (the verdict channel, the test spec) and its files (the checker's source) — reach
it only as the harness's own user, i.e. under `none` without root (issue 21).
"""

from __future__ import annotations

from dataclasses import dataclass

SECRET = "ssd-adversary-secret-5e7a"
MARKERS = ("LEAK", "READ", "CONNECTED", "ATTACHED", "KILLED", "FOUND", "WROTE", "MOVED", "ESCAPED")
ADD = "def f(a, b):\n    return a + b\n"
WRONG = "def f(a, b):\n    return 0\n"
# Finds the checker this candidate talks to (a process holding the other end of its protocol pipes) by
# reading /proc/PID/fd of every process, for up to 3 s; sets `pid` (None: not found) and `mine`.
_FIND_CHECKER = (
    "import json, os, signal, sys, time\n"
    "mine = {os.readlink('/proc/self/fd/' + a) for a in sys.argv[1:3]}\npid = None\n"
    "end = time.time() + 3\nwhile pid is None and time.time() < end:\n    for p in os.listdir('/proc'):\n"
    "        if not p.isdigit() or int(p) in (os.getpid(), os.getppid()):\n            continue\n"
    "        try:\n            fds = os.listdir(f'/proc/{p}/fd')\n"
    "            links = {os.readlink(f'/proc/{p}/fd/{fd}') for fd in fds}\n"
    "        except OSError:\n            continue\n        if mine & links:\n            pid = int(p)\n"
    "            break\n    time.sleep(0.001)\n"
)


@dataclass(frozen=True)
class Case:
    category: str
    code: str
    expect: str  # pass | fail
    tests: str = "assert f(2, 3) == 5"
    remote: tuple[str, ...] = ("f",)
    harmful: bool = True  # run only where the sandbox contains (not under isolation 'none')
    hangs: bool = False  # ends only at the timeout: graded in a batch with a short one
    last: bool = False  # graded alone, in catalogue order, after every other case (it changes files)
    # What `none` without root documents it cannot stop, shown by this probe's marker there (README)
    user_none: str = ""


def forgeries(ctx: dict[str, str]) -> dict[str, Case]:
    """The forgeries; `ctx["checker"]` is the harness's ssd/sandbox/checker.py (the copy the driver runs)."""
    checker = ctx["checker"]
    return {
        # --- forgeries: impossible by construction ---------------------------------------------------
        "forge_print_nonce": Case(
            "forgery",
            "import os, re, sys\nsrc = open('/srv/candidate.py').read()\n"
            "for m in re.findall(r'__ssd\\w+__', src):\n    print(m)\nprint('__ssd_sandbox_done_0__')\n"
            "sys.stdout.flush()\nos._exit(0)\n",
            "fail",
            harmful=False,
        ),
        "forge_nonce_from_code_constants": Case(
            "forgery",
            "import gc, os, sys\nfor o in gc.get_objects():\n    if type(o).__name__ == 'code':\n"
            "        for c in o.co_consts:\n            if isinstance(c, str) and 'ssd' in c:\n"
            "                print(c)\nos.write(1, b'done\\n')\nos._exit(0)\n",
            "fail",
            harmful=False,
        ),
        "forge_always_equal": Case(
            "forgery",
            "class E:\n    def __eq__(self, o):\n        return True\n    __hash__ = object.__hash__\n"
            "def f(a, b):\n    return E()\n",
            "fail",
            harmful=False,
        ),
        "forge_always_equal_int_subclass": Case(
            "forgery",
            "class E(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
            "def f(a, b):\n    return E(0)\n",
            "fail",
            harmful=False,
        ),
        "forge_always_equal_str_subclass": Case(
            "forgery",
            "class E(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\n"
            "def f(a, b):\n    return E('x')\n",
            "fail",
            harmful=False,
        ),
        "forge_settrace_skip_asserts": Case(
            "forgery",
            "import sys\ndef tracer(frame, event, arg):\n    frame.f_globals['check'] = lambda c: None\n"
            "    return tracer\nsys.settrace(tracer)\nsys.setprofile(tracer)\n"
            "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
            "def f(a, b):\n    return 0\n",
            "fail",
            tests="def check(candidate):\n    assert candidate(2, 3) == 5\ncheck(f)",
            harmful=False,
        ),
        "forge_monkeypatch_encoder": Case(
            "forgery",
            "import sys\nserver = sys.modules['__main__']\n"
            "server.encode = lambda v, depth=0: {'passed': True, 'verdict': 'pass'}\n"
            'server.dumps = lambda m: b\'{"passed": true}\\n{"ready": true}\\n\'\n'
            "def f(a, b):\n    return 0\n",
            "fail",
            harmful=False,
        ),
        "forge_write_verdict_to_every_fd": Case(
            "forgery",
            "import os\nfor fd in range(3, 256):\n    try:\n"
            '        os.write(fd, b\'{"ok": 5}\\n{"passed": true}\\n\')\n    except OSError:\n        pass\n'
            "def f(a, b):\n    return 0\n",
            "fail",
            harmful=False,
        ),
        "forge_exit_zero_at_load": Case("forgery", "import os\nos._exit(0)\n" + ADD, "fail", harmful=False),
        "forge_sys_exit_in_call": Case(
            "forgery", "import sys\ndef f(a, b):\n    sys.exit(0)\n", "fail", harmful=False
        ),
        "forge_garbage_reply": Case(
            "forgery",
            "import os\ndef f(a, b):\n    for fd in range(3, 64):\n        try:\n"
            "            os.write(fd, b'[[[[[[' * 100000 + b'\\n')\n"
            "        except OSError:\n            pass\n"
            "    os._exit(0)\n",
            "fail",
            harmful=False,
        ),
        "forge_closes_protocol_fds": Case(
            "forgery", "import os\nfor fd in (3, 4):\n    os.close(fd)\n" + ADD, "fail", harmful=False
        ),
        "forge_generator_result": Case(
            "forgery", "def f(a, b):\n    return (x for x in [a + b])\n", "fail", harmful=False
        ),
        "forge_deep_nesting": Case(
            "forgery",
            "def f(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x\n",
            "fail",
            harmful=False,
        ),
        # --- forgeries through the harness's side (issue 21): they reach it only as its user, under none
        "forge_verdict_fd_after_killing_checker": Case(
            "forgery",
            _FIND_CHECKER
            + "if pid:\n    fds = []\n    for fd in os.listdir(f'/proc/{pid}/fd'):\n        try:\n"
            "            if os.readlink(f'/proc/{pid}/fd/{fd}') not in mine:\n"
            "                fds.append(os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY | os.O_NONBLOCK))\n"
            "        except OSError:\n            pass\n"
            "    os.kill(pid, signal.SIGKILL)\n    for fd in fds:\n"
            "        try:\n            os.write(fd, b'{\"passed\": true}\\n')\n        except OSError:\n"
            "            pass\n    os._exit(0)\n" + WRONG,
            "fail",
            harmful=False,
        ),
        "forge_replace_spec_on_stdin": Case(
            "forgery",
            _FIND_CHECKER + "if pid:\n    os.kill(pid, signal.SIGSTOP)\n    try:\n"
            "        r = os.open(f'/proc/{pid}/fd/0', os.O_RDONLY | os.O_NONBLOCK)\n"
            "        w = os.open(f'/proc/{pid}/fd/0', os.O_WRONLY | os.O_NONBLOCK)\n"
            "        end = time.time() + 1\n        while time.time() < end:\n            try:\n"
            "                os.read(r, 1 << 20)\n            except BlockingIOError:\n"
            "                time.sleep(0.01)\n"
            "        os.write(w, json.dumps({'prelude': '', 'tests': 'pass', 'remote': []}).encode())\n"
            "        os.close(w)\n        os.close(r)\n    except OSError:\n        pass\n"
            "    os.kill(pid, signal.SIGCONT)\n" + WRONG,
            "fail",
            harmful=False,
        ),
        "forge_rewrite_checker": Case(
            "forgery",
            f"try:\n    with open({checker!r}, 'w') as out:\n"
            "        out.write('import os, sys\\n'\n"
            "                  'os.write(int(sys.argv[3]), b\\'{\"passed\": true}\\\\n\\')\\n')\n"
            f"    print('WROTE', {checker!r})\nexcept OSError:\n    pass\n" + WRONG,
            "fail",
            harmful=False,
            last=True,
            user_none="changes your files (the harness's code included)",
        ),
        "wrong_after_rewrite": Case("forgery", WRONG, "fail", harmful=False, last=True),
    }

"""What a running job tells the person watching it: an ETA per sample, a heartbeat inside long ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HEARTBEAT_SECONDS = 30.0


def clock(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Samples done in this process against those left: an ETA from the mean time per sample so far."""

    def __init__(self, todo: int) -> None:
        self.todo, self.done, self.start = todo, 0, time.monotonic()

    def step(self) -> str:
        self.done += 1
        elapsed = time.monotonic() - self.start
        left = self.todo - self.done
        if left <= 0:
            return f"job {clock(elapsed)}"
        return f"ETA {clock(elapsed / self.done * left)}"


@contextmanager
def heartbeat(what: str, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Print a line every `every` seconds while the block runs (a sample of a large model takes minutes)."""
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            print(f"  ... {what}: still decoding, {clock(time.monotonic() - start)} so far", flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# A code benchmark graded without a sandbox: the runner's first line, its last, and the tables say so.
UNCONTAINED = "UNCONTAINED (sandbox none)"
UNCONTAINED_WHY = (
    "generated code runs with your user's rights, unsandboxed: it can read and change your files (this "
    "harness and its results included) and forge its own verdict, so this pass@1 is not a contained result; "
    "install bubblewrap and leave benchmark.sandbox and SSD_SANDBOX unset"
)


def headline(summary: dict[str, Any]) -> str:
    """A finished job's figures, rounded for reading (the summary keeps them whole)."""
    parts = []
    if summary.get("accuracy") is not None:
        parts.append(f"accuracy {100 * summary['accuracy']:.1f}%")
    if summary.get("throughput_tokens_per_s") is not None:
        parts.append(f"{summary['throughput_tokens_per_s']:.1f} tokens/s")
    paired = summary.get("paired_speedup")
    if paired:
        lo, hi = paired["ci95"]
        basis = "CPU time" if paired.get("basis") == "cpu" else "wall time"
        parts.append(f"paired speedup {paired['median_speedup']:.2f}x ({basis}, 95% CI {lo:.2f}-{hi:.2f})")
    timing = summary.get("timing") or {}
    if timing.get("contended"):
        parts.append(f"CONTENDED while timed ({timing['contended_why']}): speeds unreliable")
    if "none" in str(summary.get("sandbox", "")).split("+"):
        parts.append(f"{UNCONTAINED}: pass@1 not a contained result")
    return ", ".join(parts)

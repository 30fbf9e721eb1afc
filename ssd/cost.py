"""A recorded forward-cost table: milliseconds per forward as a function of candidate rows, for one named
device and model shape (results/forward_cost/<device>.json). Read by the adaptive tree (to pick its
budget) and by the report's projected speedups (ssd/report/projection.py).

File format (JSON): device, model_shape, source (where the numbers come from), block_length (the block
its cached rows were measured at), refresh_ms (one full forward of the sequence: the block-start
refresh, and every forward without a cache), rows_ms (a cached forward over a block, by rows:
{"1": ms, "6": ms, ...}). Between recorded rows the cost is interpolated linearly; beyond the largest it
grows with the slope between the smallest and the largest (an extrapolation, said so in the projection's
label). A row of another block length is priced by its query tokens: R rows of block b cost what
R * b / block_length rows of the table's block cost (also an extrapolation where b differs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ssd.errors import SSDError


@dataclass(frozen=True)
class CostTable:
    device: str
    model_shape: str
    refresh_ms: float
    rows_ms: tuple[tuple[int, float], ...]  # sorted by rows
    block_length: int = 8
    name: str = ""

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        p = Path(path)
        if not p.is_file() and not p.is_absolute():  # a relative path: else from the checkout's root
            p = Path(__file__).resolve().parents[1] / p
        if not p.is_file():
            raise SSDError(f"forward-cost table {p} not found: give a results/forward_cost/<device>.json")
        try:
            d = json.loads(p.read_text())
            rows = tuple(sorted((int(r), float(ms)) for r, ms in d["rows_ms"].items()))
            block = int(d["block_length"])
            table = cls(str(d["device"]), str(d["model_shape"]), float(d["refresh_ms"]), rows, block, p.stem)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise SSDError(
                f"forward-cost table {p}: needs device, model_shape, block_length, refresh_ms, rows_ms ({e})"
            ) from e
        if not rows or rows[0][0] != 1 or any(ms <= 0 for _, ms in rows) or block < 1:
            raise SSDError(
                f"forward-cost table {p}: rows_ms must start at rows 1 with positive ms, block_length >= 1"
            )
        return table

    @property
    def max_rows(self) -> int:
        return self.rows_ms[-1][0]

    def ms(self, rows: float, block: int | None = None) -> float:
        """Cost of one cached forward over `rows` candidate blocks of `block` tokens (default: the
        table's block), priced by query tokens."""
        if block is not None:
            rows = rows * block / self.block_length
        pts = self.rows_ms
        if rows <= pts[0][0]:
            return pts[0][1]
        for (r0, m0), (r1, m1) in zip(pts, pts[1:], strict=False):
            if rows <= r1:
                return m0 + (m1 - m0) * (rows - r0) / (r1 - r0)
        (r0, m0), (r1, m1) = pts[0], pts[-1]
        slope = (m1 - m0) / (r1 - r0) if r1 > r0 else 0.0
        return m1 + slope * (rows - r1)

    def forward_ms(self, rows: int, full: int, block: int | None = None) -> float:
        """Cost of one forward of `rows` rows, `full` of them over the whole sequence. All whole: `full`
        refreshes (compute-bound, as a forward without a cache). Whole rows beside cached ones (states
        seeding the next block): the cached rows' cost plus `full` refreshes, as this harness runs them
        (a second call). A ragged batch fusing both would pay the fixed cost ms(1) once; not built, so
        not priced."""
        if full >= rows:
            return self.refresh_ms * rows
        return self.ms(rows - full, block) + full * self.refresh_ms

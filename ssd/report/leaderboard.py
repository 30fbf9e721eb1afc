"""d3LLM's AUP leaderboard beside our runs (`make paper`: results/tables/paper_aup_leaderboard.md).

For each model family, a summary (every published method's AUP per task and their mean over the
family's tasks, as d3LLM ranks them), then per task every published method's points and AUP
(ssd/report/aup.py computes them from the transcribed points, ssd/report/published.py `LEADERBOARD`),
and ours beside them.

Matching rule. A run of ours stands beside a task when its checkpoint's name is the task's model
(`LLaDA-8B-Instruct`, `Dream-v0-Instruct-7B`; ignoring case; as for the Fast-dLLM tables: tiny and other
checkpoints never match), its test set is one of the task's `benchmarks` (GSM8K-CoT: gsm8k_cot or its
zero-shot variant; MATH: the full split or MATH-500; MBPP and HumanEval: mbpp, humaneval) and it is greedy.
Which of our benchmarks stands for a task is our reading: d3LLM's points do not carry prompts, shots or
generation lengths, so each of our rows names its benchmark and setting. Our runs form one row per
decoder family and setting (aup.SETTING), its points starting at the setting's stepwise run ("from
stepwise"), as each published method starts at its TPF-1 run. Long-GSM8K has no benchmark here.

y_max. A task's y_max is the best accuracy of any method in its table, ours included: the published
AUPs are then d3LLM's own unless one of our runs is more accurate than every published method, which the
task's heading says.
"""

from __future__ import annotations

import pandas as pd

from ssd.report import aup
from ssd.report.published import LEADERBOARD, LEADERBOARD_SOURCE, LeaderboardTask, Points
from ssd.report.tables import markdown

NOT_RUN = "not run"
FAMILY_NAMES = {"llada": "LLaDA", "dream": "Dream"}


def matching(frame: pd.DataFrame, task: LeaderboardTask) -> pd.DataFrame:
    """Our runs standing beside a task (the module docstring's rule)."""
    ok = (
        (frame["model"].str.lower() == task.model.lower())
        & frame["benchmark_variant"].isin(task.benchmarks)
        & (frame["temperature"] == 0)
    )
    return frame[ok]


def points_text(points: Points | list[tuple[float, float]]) -> str:
    return " ".join(f"({r:.2f}, {y:.2f})" for r, y in sorted(points))


def task_scores(task: LeaderboardTask, ours: pd.DataFrame) -> tuple[float, bool, dict[str, float]]:
    """(y_max, whether one of ours set it, each published method's AUP)."""
    published = max(y for points in task.methods.values() for _, y in points)
    mine = [100.0 * a for a in ours["accuracy"].dropna()]
    y_max = max([published, *mine])
    scores = {method: aup.aup(points, y_max) for method, points in task.methods.items()}
    return y_max, y_max > published, scores


def _setting(r: dict) -> str:
    return (
        f"{r['benchmark']}, {r['cache']} cache, block {r['block_length']}, gen {r['gen_length']}, "
        f"sweep {r['sweep']}, {r['device']}"
    )


def render_task(task: LeaderboardTask, frame: pd.DataFrame) -> str:
    ours = matching(frame, task)
    y_max, by_ours, scores = task_scores(task, ours)
    rows = []
    for method, points in task.methods.items():
        kept = aup.kept(points)
        rows.append(
            [method, "published", points_text(points), f"{len(kept)}/{len(points)}", f"{scores[method]:.1f}"]
        )
    table = aup.families(ours, y_max={aup.setting_key(r): y_max for r in ours.to_dict("records")})
    for r in table.to_dict("records"):
        score = "n/a" if r["aup"] is None or pd.isna(r["aup"]) else f"{r['aup']:.1f}"
        setting = _setting(r) + ("" if r["anchor"] in ("none", "itself") else f"; from {r['anchor']}")
        rows.append(
            [f"ours: {r['family']}", setting, points_text(r["curve"]), f"{r['kept']}/{r['points']}", score]
        )
    if table.empty:
        why = (
            "no benchmark here stands for it"
            if not task.benchmarks
            else f"no greedy run of {task.model} on " + " or ".join(task.benchmarks)
        )
        rows.append(["ours", f"{NOT_RUN} ({why})", "", "", ""])
    heading = f"### {task.task} (y_max {y_max:.2f}%" + (", set by one of our runs" if by_ours else "") + ")"
    headers = ["method", "setting", "points (TPF, accuracy %)", "kept", "AUP"]
    return heading + "\n\n" + markdown(headers, [False, False, False, True, True], rows)


def render_family(family: str, frame: pd.DataFrame) -> str:
    tasks = [t for t in LEADERBOARD if t.family == family]
    methods = list(dict.fromkeys(m for t in tasks for m in t.methods))
    scores = [task_scores(t, matching(frame, t))[2] for t in tasks]
    rows = []
    for method in methods:
        cells = [s.get(method) for s in scores]
        mean = (
            sum(c for c in cells if c is not None) / len(tasks) if all(c is not None for c in cells) else None
        )
        rows.append(
            [method]
            + ["" if c is None else f"{c:.1f}" for c in cells]
            + ["n/a" if mean is None else f"{mean:.1f}"]
        )
    headers = ["method", *(t.task for t in tasks), "mean"]
    summary = markdown(headers, [False] + [True] * (len(tasks) + 1), rows)
    details = "\n".join(render_task(t, frame) for t in tasks)
    return f"## {FAMILY_NAMES.get(family, family)} ({tasks[0].model})\n\n{summary}\n{details}"


def render_leaderboard(frame: pd.DataFrame) -> str:
    families = list(dict.fromkeys(t.family for t in LEADERBOARD))
    intro = (
        "# d3LLM's AUP leaderboard, with our runs beside it\n\n"
        f"Published: {LEADERBOARD_SOURCE}. AUP computed here from those points (ssd/report/aup.py): points "
        "sorted by TPF, those within 5 points of the accuracy at the smallest TPF kept, AUP = ρ₁y₁ + "
        "Σ ½(ρᵢ − ρᵢ₋₁)(yᵢW(yᵢ) + yᵢ₋₁W(yᵢ₋₁)), W(y) = min(exp(−3(1 − y/y_max)), 1), y_max the best "
        "accuracy of any method in the task's table (ours included). mean: over the family's tasks. Ours: "
        "greedy runs of the same checkpoint on the benchmark standing for the task, one row per decoder "
        "family and setting; the matching rule is in ssd/report/leaderboard.py."
    )
    return intro + "\n\n" + "\n".join(render_family(f, frame) for f in families)

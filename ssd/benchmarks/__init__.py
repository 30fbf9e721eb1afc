"""Benchmarks: one class per test set, looked up by name."""

from ssd.registry import Registry

BENCHMARKS = Registry(
    "benchmark",
    {
        "gsm8k": "ssd.benchmarks.gsm8k:GSM8K",
        "arith": "ssd.benchmarks.arith:Arith",
        "tally": "ssd.benchmarks.tally:Tally",
        "math": "ssd.benchmarks.math:MATH",
        "humaneval": "ssd.benchmarks.humaneval:HumanEval",
        "mbpp": "ssd.benchmarks.mbpp:MBPP",
    },
)

"""Run folders (the source of truth for every result): their files (runfolder.py), the summary computed
from their samples (summary.py) and its check (verify.py), timing, provenance and the W&B mirror."""

from ssd.results.runfolder import RunFolder, config_hash, run_name
from ssd.results.summary import aggregate, summarize

__all__ = ["RunFolder", "aggregate", "config_hash", "run_name", "summarize"]

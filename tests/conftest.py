import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Benchmarks (`make bench`) are scripts, not tests: never collected, even when named on the command line.
collect_ignore = ["bench"]

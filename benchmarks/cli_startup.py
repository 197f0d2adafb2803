"""How long `enofctl` takes to answer without computing: `--version`, `--help`, `distill --help`, each against
`python -c "import torch"`, timed side by side in one run (the commands alternate within every repetition, so
a load that comes and goes on a shared machine falls on all of them alike). Prints a markdown table of the
medians and their ratio to importing torch.

    PYTHONPATH=. python benchmarks/cli_startup.py [--repeats 5] [--before OTHER_CHECKOUT]

``--before`` times the same enofctl commands from another checkout too (e.g. one before a change), in the same
alternation."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: list[tuple[str, list[str]]] = [
    ('python -c "import torch"', ["-c", "import torch"]),
    ("python -m enofctl --version", ["-m", "enofctl", "--version"]),
    ("python -m enofctl --help", ["-m", "enofctl", "--help"]),
    ("python -m enofctl distill --help", ["-m", "enofctl", "distill", "--help"]),
    ("python -m enofctl inspect STUDENT", ["-m", "enofctl", "inspect", "tests/data/v3_student_channel.safetensors"]),
]
DEEP = ("python -m enofctl inspect STUDENT --deep",
        ["-m", "enofctl", "inspect", "tests/data/v3_student_channel.safetensors", "--deep"])


def seconds(args: list[str], root: Path) -> float:
    """Wall-clock seconds of ``python ARGS`` with ``root``'s enofctl first on the path (its output discarded)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--before", type=Path, help="another checkout whose enofctl commands are timed alongside")
    a = ap.parse_args()
    runs: list[tuple[str, list[str], Path]] = [(name, args, ROOT) for name, args in (*COMMANDS, DEEP)]
    if a.before is not None:
        runs += [(f"{name} (before)", args, a.before.resolve()) for name, args in COMMANDS[1:]]
    for _, args, root in runs:  # one untimed pass: the files in the page cache for every command alike
        seconds(args, root)
    times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for _ in range(a.repeats):
        for name, args, root in runs:
            times[name].append(seconds(args, root))
    torch_s = statistics.median(times[COMMANDS[0][0]])
    print(f"{a.repeats} alternating repetitions, median wall-clock seconds (Python {sys.version.split()[0]})\n")
    print("| command | median s | min s | max s | / import torch |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| `{name}` | {med:.2f} | {min(ts):.2f} | {max(ts):.2f} | {med / torch_s:.2f}x |")


if __name__ == "__main__":
    main()

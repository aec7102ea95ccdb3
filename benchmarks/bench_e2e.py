"""End to end: the wall time of whole CLI commands, as a user runs them, from a fresh output directory.

- the README's main command, ``dynsim sweep --ode`` on the built-in default configuration
  (r = 8, n = 24, widths 256 and 1024, 4 seeds, ``param`` backend, with the ODE overlay);
- ``dynsim compare`` over widths 64 ... 65536 (6 widths, default configuration, 4 seeds,
  ``gram`` backend, plus the ODE and the SGD floor run).

Each command runs in a subprocess, so the figure includes interpreter start-up, imports, JAX
compilation, the simulation, writing netCDF results and drawing the figures: what a user waits
for. Each is run ``REPEATS`` times, each time into a new empty directory (no resume).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, summary, write_record

COMMANDS = {
    "README main command": ["sweep", "--ode"],
    "compare over widths 64..65536": ["compare", "--width", "64,256,1024,4096,16384,65536"],
}
REPEATS = 2


def wall_seconds(arguments: list[str]) -> float:
    """Wall time of ``dynsim <arguments> --out <new temporary directory>`` (raises if it fails)."""
    dynsim = Path(sys.executable).with_name("dynsim")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([str(dynsim), *arguments, "--quiet", "--out", out], check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> int:
    rows = {}
    for name, arguments in COMMANDS.items():
        rows[name] = {
            "command": "dynsim " + " ".join(arguments),
            **summary([wall_seconds(arguments) for _ in range(REPEATS)]),
        }
    markdown = markdown_table(
        ["command", "wall time, median (min..max)"],
        [
            [f"`{row['command']}`", f"{row['median_s']:.1f} s ({row['min_s']:.1f}..{row['max_s']:.1f})"]
            for row in rows.values()
        ],
    )
    markdown = f"End to end, {REPEATS} runs each into a new directory (compilation included):\n\n{markdown}"
    print(markdown)
    print(f"written {write_record('e2e', {'commands': rows}, markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

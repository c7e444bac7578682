"""Print a command of the README's quick start, exactly as written there.

    python3 .ci/readme_commands.py setup   # the first command without its final `&& ... hootwatch demo ...`
    python3 .ci/readme_commands.py demo    # the first command as written (set-up + demo)
    python3 .ci/readme_commands.py test    # the second command

.ci/run holds the first command (set-up + demo) and the test line word for word; tests/test_packaging.py uses this
to check they are the README's, so CI fails whenever the README would.
"""

import re
import sys
from pathlib import Path

DEMO = " && .venv/bin/hootwatch demo"


def commands(readme: str) -> list[str]:
    quick = readme.split("## Quick start", 1)[1]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", quick, re.S)][:2]


def main(which: str) -> str:
    first, test = commands((Path(__file__).resolve().parents[1] / "README.md").read_text())
    if DEMO not in first:
        sys.exit(f"readme_commands: the README's first command does not end with `{DEMO.strip()} ...`")
    return {"setup": first.split(DEMO, 1)[0], "demo": first, "test": test}[which]


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "setup"))

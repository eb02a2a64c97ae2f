"""Print the conformance matrix as a Markdown table from a pytest JUnit XML file.

    .venv/bin/pytest tests/conformance --junitxml=conformance.xml
    .venv/bin/python -m tests.conformance.report conformance.xml [--failures]

One row per promise x adapter, one column per mode x store: PASS, FAIL or N/A (the reason
is listed under the table). ``--failures`` also prints each failing cell's message.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

from tests.conformance.harness import ADAPTERS, MODES, STORES

CELL = re.compile(r"^test_(?P<promise>\w+)\[(?P<adapter>\w+)-(?P<mode>\w+)-(?P<store>\w+)\]$")


def read(path: str) -> dict[tuple[str, str, str, str], tuple[str, str]]:
    """``(promise, adapter, mode, store) -> (PASS | FAIL | N/A | SKIP, message)``."""
    cells: dict[tuple[str, str, str, str], tuple[str, str]] = {}
    for case in ET.parse(path).iter("testcase"):
        match = CELL.match(case.get("name", ""))
        if match is None:
            continue
        key = (match["promise"], match["adapter"], match["mode"], match["store"])
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        skipped = case.find("skipped")
        if failed is not None:
            cells[key] = ("FAIL", failed.get("message", ""))
        elif skipped is not None:
            message = skipped.get("message", "")
            cells[key] = ("N/A" if "N/A:" in message else "SKIP", message)
        else:
            cells[key] = ("PASS", "")
    return cells


def table(cells: dict[tuple[str, str, str, str], tuple[str, str]]) -> list[str]:
    columns = [(m, s) for m in MODES for s in STORES]
    lines = [
        "| promise | adapter | " + " | ".join(f"{m} {s}" for m, s in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    reasons: dict[str, str] = {}
    for promise in sorted({k[0] for k in cells}):
        for adapter in ADAPTERS:
            row = []
            for mode, store in columns:
                verdict, message = cells.get((promise, adapter, mode, store), ("-", ""))
                if verdict == "N/A":
                    reason = message.split("N/A:", 1)[1].strip()
                    number = reasons.setdefault(reason, f"N/A{len(reasons) + 1}")
                    verdict = number
                row.append(verdict)
            lines.append(f"| {promise} | {adapter} | " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"- {number}: {reason}" for reason, number in reasons.items()]
    return lines


def main(argv: list[str]) -> int:
    cells = read(argv[0])
    print("\n".join(table(cells)))
    if "--failures" in argv:
        print()
        for (promise, adapter, mode, store), (verdict, message) in sorted(cells.items()):
            if verdict == "FAIL":
                print(f"- {promise}[{adapter}-{mode}-{store}]: {message[:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

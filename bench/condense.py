"""Follow-ups that keep their topic: each condense mode on bench/data/followups.jsonl (42
follow-ups, Chinese and English: ellipsis, pronouns, "and for refunds?"), with the terms the
standalone question must keep; the share that keeps them all, and the time per follow-up.

    python bench/condense.py              # off and rules
    python bench/condense.py --llm        # and the bundled model (minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from streamrag.answer.condense import Condenser
from streamrag.history.base import Turn
from streamrag.retrieve.tokenize import tokenize

SET = Path(__file__).resolve().parent / "data" / "followups.jsonl"


def keeps(standalone: str, terms: list[str]) -> bool:
    """Every term is in the standalone question (English ones as stemmed words)."""
    words = set(tokenize(standalone))
    return all(
        set(tokenize(term)) <= words if term.isascii() else term in standalone for term in terms
    )


async def measure(condenser: Condenser, cases: list[dict]) -> tuple[float, float, list[str]]:
    kept, times, misses = 0, [], []
    for case in cases:
        turns = [Turn(question) for question in case["history"]]
        started = time.perf_counter()
        standalone = await condenser.condense(case["question"], turns)
        times.append((time.perf_counter() - started) * 1000)
        if keeps(standalone, case["keep"]):
            kept += 1
        else:
            misses.append(f"{case['question']} -> {standalone}")
    p95 = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return kept / len(cases), p95, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", action="store_true", help="also the bundled model")
    args = parser.parse_args()
    cases = [json.loads(line) for line in SET.open(encoding="utf-8")]
    modes: list[tuple[str, object]] = [("off", None), ("rules", None)]
    if args.llm:
        from streamrag.config import load_settings
        from streamrag.llm import make_llm

        home = Path(tempfile.mkdtemp(prefix="streamrag-condense-"))
        modes.append(("llm", make_llm(load_settings(home=home))))
    print(f"{len(cases)} follow-ups")
    for mode, llm in modes:
        condenser = Condenser(llm, mode)  # type: ignore[arg-type]
        share, p95, misses = asyncio.run(measure(condenser, cases))
        print(f"{mode:<6} keeps the topic {share:.1%}, condense p95 {p95:.1f} ms")
        for miss in misses[:5]:
            print(f"    missed: {miss}")


if __name__ == "__main__":
    main()

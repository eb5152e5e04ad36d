"""How right the in-flight citation check is: precision and recall of ``supported`` and of
inferred citations, on a labelled set built from the dev sets' gold passages.

For each question with an answer, two kinds of answer sentence are made: the gold passage's own
sentence that holds the answer ("extracted"), and the question's words with the answer
("composed", as a model tends to write). Each is labelled with the sources it would cite:
- supported: the sentence with its gold passage;
- unsupported, another passage: the sentence with the non-gold passage of the same set that
  shares most of its terms (of a random 50: a passage about something else that looks alike);
- unsupported, a wrong fact: the sentence with another question's answer in place of its own,
  with the gold passage (the "Yes, libffi is thread-safe [2]" case).
Inferred citations: the sentence among its gold passage and four random others, the gold one
expected. The thresholds in streamrag/answer/support.py were fixed before this was run.

    python bench/citation_support.py                    # the four sets, 150 questions each
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from streamrag.answer.events import Source
from streamrag.answer.support import SupportJudge, support, support_terms

ROOT = Path(__file__).resolve().parents[1]
SETS = ("cmrc2018", "cmu-wikiqa-en", "rgb-zh-int", "rgb-en")
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?|[^.]+\.")
_ASKING = re.compile(
    r"[?？]|^(what|who|when|where|which|how|why|is|are|does|did)\b|什么|哪|谁|多少|几", re.I
)


def source(number: int, passage: dict) -> Source:
    return Source(number, passage["id"], passage["id"], passage.get("title", ""), "", "", 1.0,
                  passage["text"])  # fmt: skip


def claims(question: str, answer: str, passage: str) -> dict[str, str]:
    """The answer sentences of a question: extracted from the passage, and composed."""
    made = {"composed": f"{_ASKING.sub(' ', question).strip()} {answer}"}
    for sentence in _SENTENCE.findall(passage):
        if answer.lower() in sentence.lower():
            made["extracted"] = sentence.strip()
            break
    return made


def evaluate(data: Path, questions: int, rng: random.Random) -> dict[str, dict[str, float]]:
    corpus = {p["id"]: p for p in map(json.loads, (data / "corpus.jsonl").open(encoding="utf-8"))}
    queries = [json.loads(line) for line in (data / "queries.jsonl").open(encoding="utf-8")]
    queries = [q for q in queries if q.get("answers") and q["gold_ids"]][:questions]
    ids = list(corpus)
    counts = {kind: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "inferred": 0, "right": 0, "n": 0}
              for kind in ("extracted", "composed")}  # fmt: skip
    for index, query in enumerate(queries):
        answer = query["answers"][0]
        gold_ids = set(query["gold_ids"]) & set(corpus)
        gold = next((corpus[i] for i in query["gold_ids"] if i in corpus), None)
        if gold is None:
            continue
        others = [corpus[i] for i in rng.sample(ids, 50) if i not in gold_ids]
        wrong = queries[(index + 1) % len(queries)]["answers"][0]
        for kind, sentence in claims(query["question"], answer, gold["text"]).items():
            if wrong.lower() in sentence.lower() or answer.lower() in wrong.lower():
                continue
            terms = support_terms(sentence)
            lookalike = max(others, key=lambda p: support(terms, support_terms(p["text"])))
            asked, falsified = query["question"], sentence.replace(answer, wrong)
            cases = [
                (True, SupportJudge([source(1, gold)], asked).judge(sentence, 1)[1]),
                (False, SupportJudge([source(1, lookalike)], asked).judge(sentence, 1)[1]),
                (False, SupportJudge([source(1, gold)], asked).judge(falsified, 1)[1]),
            ]
            seen = counts[kind]
            for label, said in cases:
                seen["tp" if label and said else "fn" if label else "fp" if said else "tn"] += 1
            candidates = [gold, *rng.sample(others, 4)]
            rng.shuffle(candidates)
            numbered = [source(n, p) for n, p in enumerate(candidates, start=1)]
            inferred = SupportJudge(numbered, asked).infer(sentence)
            seen["n"] += 1
            if inferred is not None:
                seen["inferred"] += 1
                seen["right"] += candidates[inferred[0] - 1] is gold
    results = {}
    for kind, seen in counts.items():
        said, real = seen["tp"] + seen["fp"], seen["tp"] + seen["fn"]
        results[kind] = {
            "supported_precision": seen["tp"] / said if said else 0.0,
            "supported_recall": seen["tp"] / real if real else 0.0,
            "cases": seen["tp"] + seen["fp"] + seen["fn"] + seen["tn"],
            "inferred_precision": seen["right"] / seen["inferred"] if seen["inferred"] else 0.0,
            "inferred_recall": seen["right"] / seen["n"] if seen["n"] else 0.0,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--questions", type=int, default=150)
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"{'set':<15} {'sentence':<10} {'cases':>6} {'supported P':>12} {'R':>6} "
          f"{'inferred P':>11} {'R':>6}")  # fmt: skip
    for name in SETS:
        for kind, r in evaluate(args.data / name, args.questions, rng).items():
            print(
                f"{name:<15} {kind:<10} {r['cases']:>6} {r['supported_precision']:>12.3f} "
                f"{r['supported_recall']:>6.3f} {r['inferred_precision']:>11.3f} "
                f"{r['inferred_recall']:>6.3f}"
            )


if __name__ == "__main__":
    main()

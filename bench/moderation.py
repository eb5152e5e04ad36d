"""Streaming moderation: leaks, false positives, hold-back, cancellation, input cost.

Rules: a 10,000-entry word list (8,000 Chinese character n-grams made of common characters
and 2,000 English word pairs, each absent from the clean answers below), masked, and the four
built-in PII detectors, masked.

The Chinese entries are the worst case for holding back (see :func:`word_list`).

1. Leak test. --answers answers are made from clean sentences of the evaluation sets
   (../shared/data) with 1-3 forbidden items put in — a listed entry as written, spaced
   out, hyphenated, full-width, upper case or in traditional characters; a valid mobile
   number, 身份证 number, bank card or e-mail, with or without separators — and 1-2 near
   misses that must stay (a 身份证 number with a wrong check character, a card that fails the
   Luhn check, 12 digits, an entry glued into a longer word, an entry cut short). Each is
   streamed in --splits random token splits through every surface of a real server (SSE,
   OpenAI chunks, plain text, ``streamrag.Client`` as the CLI uses it) and through the
   Python API; a forbidden string in what a client received is a leak, a near miss that did
   not arrive whole is a false positive.
2. False positives: the clean answers themselves, through the Python API: any change is one.
3. Hold-back: the clean answers in random token splits through the filter; per token, how
   many later tokens it waited for (× the mock's 20 ms gap) and the CPU per token.
4. Cancellation: a block rule on "lazy dog" against ../shared/bench/mockllm.py (which
   streams "... over lazy dog while ..."): the tokens the mock wrote after "dog".
5. Input: the time to check each question of the sets with the same rules.

    python bench/moderation.py [--answers 1000] [--splits 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from streamrag import Client, KnowledgeBase, load_settings
from streamrag.answer.citations import cite
from streamrag.answer.engine import AnswerEngine, AnswerSettings
from streamrag.answer.events import Done, Token
from streamrag.llm.base import ChatMessage, LLMDelta
from streamrag.moderation import Rules, TextFilter, check_text, load_rules, moderation
from streamrag.moderation.detectors import _ID_CHECK, _ID_WEIGHTS
from streamrag.moderation.skeleton import fold_text
from streamrag.server import create_app

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETS = ("cmrc2018", "cmu-wikiqa-en", "rgb-zh-int", "rgb-en")
CJK = re.compile(r"[\u4e00-\u9fff]")
GAP_MS = 20.0  # the mock upstream's inter-token gap


def clean_sentences(rng: random.Random, count: int) -> list[str]:
    found = []
    for name in SETS:
        with (SHARED / "data" / name / "corpus.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                text = json.loads(line)["text"]
                found += [
                    s.strip()
                    for s in re.split(r"(?<=[。！？.!?])\s*", text)
                    if 20 <= len(s.strip()) <= 160
                ]
    rng.shuffle(found)
    return found[:count]


def questions() -> list[str]:
    asked = []
    for name in SETS:
        with (SHARED / "data" / name / "queries.jsonl").open(encoding="utf-8") as lines:
            asked += [json.loads(line)["question"] for line in lines]
    return asked


def word_list(rng: random.Random, clean: list[str], others: list[str], size: int) -> list[str]:
    """``size`` entries none of the ``clean`` answers holds: Chinese ones of 2-4 of their most
    common characters (so that many a character of an answer begins some entry: the worst
    case for holding back), English pairs of words they never use (as a list of slurs or
    brand names would be), taken from ``others``."""
    folded = "\n".join(fold_text(text) for text in clean)
    chars = [c for text in clean for c in text if CJK.match(c)]
    common = [
        c for c, _ in sorted(((c, chars.count(c)) for c in set(chars[:20000])), key=lambda x: -x[1])
    ][:1500]
    seen = {w.lower() for text in clean for w in re.findall(r"[A-Za-z]+", text)}
    english = sorted(
        {w.lower() for text in others for w in re.findall(r"[A-Za-z]{4,}", text)} - seen
    )
    entries: set[str] = set()
    while len(entries) < size * 4 // 5:
        entry = "".join(rng.choice(common) for _ in range(rng.randint(2, 4)))
        if fold_text(entry) not in folded:
            entries.add(entry)
    while len(entries) < size:
        entry = f"{rng.choice(english)} {rng.choice(english)}"
        if fold_text(entry) not in folded:
            entries.add(entry)
    return sorted(entries)


def mobile(rng: random.Random) -> str:
    digits = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
    return rng.choice(
        [
            digits,
            f"{digits[:3]} {digits[3:7]} {digits[7:]}",
            f"{digits[:3]}-{digits[3:7]}-{digits[7:]}",
        ]
    )


def id_card(rng: random.Random, valid: bool = True) -> str:
    region = rng.choice(["110105", "310104", "440305"])
    born = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"{region}{born}{rng.randrange(1000):03d}"
    check = _ID_CHECK[sum(w * int(d) for w, d in zip(_ID_WEIGHTS, body, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def card(rng: random.Random, valid: bool = True) -> str:
    digits = [rng.randrange(10) for _ in range(15)]
    total = sum(
        (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
        for i, d in enumerate(reversed(digits))
    )
    last = (10 - total % 10) % 10
    if not valid:
        last = (last + rng.randint(1, 9)) % 10
    number = "".join(map(str, [*digits, last]))
    return rng.choice([number, " ".join(number[i : i + 4] for i in range(0, 16, 4))])


def variant(rng: random.Random, entry: str) -> str:
    import opencc

    if entry.isascii():
        return rng.choice(
            [
                entry,
                entry.upper(),
                entry.replace(" ", "  "),
                "".join(chr(ord(c) + 0xFEE0) if c != " " else "　" for c in entry),
            ]
        )
    return rng.choice(
        [entry, " ".join(entry), "-".join(entry), opencc.OpenCC("s2t").convert(entry)]
    )


@dataclass
class Case:
    text: str
    forbidden: list[str]
    near_misses: list[str]


def forbidden_item(rng: random.Random, entries: list[str]) -> str:
    kind = rng.choice(["word", "word", "mobile", "id", "card", "email"])
    if kind == "word":
        return variant(rng, rng.choice(entries))
    if kind == "mobile":
        return mobile(rng)
    if kind == "id":
        return id_card(rng)
    if kind == "card":
        return card(rng)
    return f"user{rng.randrange(10**4)}@example{rng.randrange(99)}.com"


def near_miss(rng: random.Random, entries: list[str]) -> str:
    kind = rng.choice(["id", "card", "digits", "glued", "short"])
    entry = rng.choice(entries)
    if kind == "id":
        return id_card(rng, valid=False)
    if kind == "card":
        return card(rng, valid=False)
    if kind == "digits":
        return f"12{rng.randrange(10**10):010d}"
    if not entry.isascii():
        return entry[:-1]
    return "x" + entry.replace(" ", "") + "x" if kind == "glued" else entry.split()[0]


def make_case(rng: random.Random, base: str, entries: list[str], rules: Rules) -> Case:
    forbidden = [forbidden_item(rng, entries) for _ in range(rng.randint(1, 3))]
    items = [f" {item} " for item in forbidden]
    near: list[str] = []
    while len(near) < rng.randint(1, 2):
        item = near_miss(rng, entries)
        if check_text(rules.on("output"), item)[0] != item:
            continue  # a shorter entry, or an 18-digit number that passes the Luhn check
        near.append(item)
        # letters on both sides: no entry runs on into the answer around it
        items.append(f" 【{item}】 " if item[0].isdigit() else f" x{item}x ")
    text = base
    for at, item in sorted(((rng.randrange(len(base) + 1), item) for item in items), reverse=True):
        text = text[:at] + item + text[at:]  # from the end: no item lands inside another
    return Case(text, forbidden, near)


def holdback(rules: Rules, texts: list[str], cut: Callable[[str], list[str]], name: str) -> None:
    """How long output moderation holds characters back, with ``texts`` cut by ``cut``."""
    waits: list[int] = []
    held: list[int] = []
    cpu = 0.0
    tokens = 0
    for text in texts:
        pieces = cut(text)
        answer = TextFilter(rules.on("output"))
        arrived: list[int] = []  # the token that brought each character
        released = 0
        t0 = time.process_time()
        for index, piece in enumerate(pieces):
            arrived += [index] * len(piece)
            out = answer.feed(piece)
            waits += [index - arrived[i] for i in range(released, released + len(out))]
            released += len(out)
            held.append(len(answer.text) - released)
        out = answer.finish()
        cpu += time.process_time() - t0
        waits += [len(pieces) - arrived[i] for i in range(released, released + len(out))]
        tokens += len(pieces)
    waits.sort()
    held.sort()
    p99 = waits[int(0.99 * (len(waits) - 1))]
    share = [sum(1 for w in waits if w == k) / len(waits) for k in range(4)]
    print(f"\nhold-back, {name}, {tokens} tokens:")
    print(
        f"  characters held after a token: p50 {statistics.median(held):.0f},"
        f" p99 {held[int(0.99 * (len(held) - 1))]}, max {held[-1]}"
    )
    print(
        f"  later tokens a character waited for: p50 {statistics.median(waits):.0f}, p99 {p99},"
        f" max {waits[-1]} -> extra delay p99 {p99 * GAP_MS:.0f} ms at a {GAP_MS:.0f} ms gap"
    )
    print(
        "  characters out after 0 / 1 / 2 / 3 more tokens: " + " / ".join(f"{s:.2%}" for s in share)
    )
    print(f"  filter CPU per token: {cpu / tokens * 1000:.4f} ms")


def model_pieces() -> Callable[[str], list[str]]:
    """The bundled 0.5B model's tokenizer (its vocabulary only), as text pieces."""
    from llama_cpp import Llama

    from streamrag.llm.local import DEFAULT_MODEL, bundled_model

    path = bundled_model(load_settings().home / "models", DEFAULT_MODEL)
    model = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def cut(text: str) -> list[str]:
        pieces, pending = [], b""
        for token in model.tokenize(text.encode(), add_bos=False, special=False):
            pending += model.detokenize([token])
            try:
                pieces.append(pending.decode())
                pending = b""
            except UnicodeDecodeError:
                continue  # a character split between tokens comes with the next
        return pieces

    return cut


def splits(rng: random.Random, text: str) -> list[str]:
    pieces, at = [], 0
    while at < len(text):
        size = rng.randint(1, 4)
        pieces.append(text[at : at + size])
        at += size
    return pieces


class ReplayLLM:
    """Streams the pieces registered for the case named in the question ("case 12-3")."""

    name = "replay"

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts

    async def aclose(self) -> None:
        pass

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        key = re.search(r"case (\d+-\d+)", messages[-1]["content"]).group(1)  # type: ignore[union-attr]
        for piece in self.scripts[key]:
            yield LLMDelta(text=piece)
        yield LLMDelta(finish_reason="stop")


def leaked(received: str, case: Case) -> tuple[int, int]:
    """(forbidden strings found, near misses missing) in what a client received."""
    return (
        sum(item in received for item in case.forbidden),
        sum(item not in received for item in case.near_misses),
    )


async def http_surfaces(base: str, key: str) -> dict[str, str]:
    """What each HTTP surface's client received for case ``key`` (decoded bytes; for the
    OpenAI chunks, their JSON decoded too)."""
    question = f"case {key}"
    got = {}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        raw = (await client.post("/v1/chat/stream", json={"question": question})).content
        got["sse"] = raw.decode()
        body = {
            "model": "bench",
            "stream": True,
            "messages": [{"role": "user", "content": question}],
        }
        raw = (await client.post("/v1/chat/completions", json=body)).content.decode()
        content = "".join(
            choice["delta"].get("content") or ""
            for line in raw.splitlines()
            if line.startswith("data: {")
            for choice in json.loads(line[6:]).get("choices", [])
        )
        got["openai"] = raw + "\n" + content
        got["text"] = (await client.get("/v1/chat/text", params={"q": question})).text
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=1000)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--words", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(2026)
    clean = clean_sentences(rng, 2 * args.answers)
    clean_answers, bases = clean[: args.answers], clean[args.answers :]
    started = time.perf_counter()
    entries = word_list(rng, clean_answers, bases, args.words)
    work = Path(tempfile.mkdtemp(prefix="streamrag-moderation-"))
    (work / "words.txt").write_text("\n".join(entries), encoding="utf-8")
    (work / "rules.toml").write_text(
        '[[rule]]\nclass = "words"\nwords_file = "words.txt"\naction = "mask"\n'
        '[[rule]]\nclass = "pii"\npii = ["cn_mobile", "cn_id_card", "bank_card", "email"]\n'
        'action = "mask"\n',
        encoding="utf-8",
    )
    load_started = time.perf_counter()
    rules = load_rules(work / "rules.toml")
    print(
        f"{len(entries)} entries, rules loaded in {time.perf_counter() - load_started:.2f} s"
        f" (list built in {load_started - started:.1f} s)"
    )
    cases = [make_case(rng, base, entries, rules) for base in bases]

    # 2. false positives on clean answers, 3. hold-back and CPU
    false_positives = sum(check_text(rules.on("output"), text)[0] != text for text in clean_answers)
    print(
        f"\nclean answers: {len(clean_answers)}, changed by moderation (false positives): "
        f"{false_positives}"
    )
    vocabulary = model_pieces()
    for name, kept in (("word list", {"words"}), ("PII", {"pii"}), ("both", {"words", "pii"})):
        subset = Rules(tuple(rule for rule in rules.rules if rule.rule_class in kept))
        holdback(subset, clean_answers, vocabulary, f"{name}, the bundled model's tokens")
    holdback(rules, clean_answers, lambda text: splits(rng, text), "both, random 1-4 characters")

    # 5. input
    asked = questions()
    timings = []
    for question in asked:
        t0 = time.perf_counter()
        check_text(rules.on("input"), question)
        timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    print(
        f"\ninput check of {len(asked)} questions: p50 {statistics.median(timings):.3f} ms,"
        f" p99 {timings[int(0.99 * (len(timings) - 1))]:.3f} ms"
    )

    # 1. leak test
    scripts = {
        f"{i}-{s}": splits(rng, case.text)
        for i, case in enumerate(cases)
        for s in range(args.splits)
    }
    settings = load_settings(
        home=work / "home",
        kb="bench",
        embed_model="use-m3",
        moderation_rules=work / "rules.toml",
        condense="off",
    )
    with KnowledgeBase("bench", settings=settings) as kb:
        (work / "doc.txt").write_text(
            "七天内可以退货。Returns are accepted within seven days.", "utf-8"
        )
        kb.ingest([work / "doc.txt"])
    llm = ReplayLLM(scripts)
    leaks = {name: [0, 0, 0] for name in ("python", "sse", "openai", "text", "client")}
    with KnowledgeBase("bench", settings=settings) as kb:
        engine = AnswerEngine(
            kb, llm, AnswerSettings(condense="off"), transformers=(moderation(rules), cite)
        )

        async def python_api() -> None:
            for key in scripts:
                case = cases[int(key.split("-")[0])]
                events = [e async for e in engine.run(f"case {key}")]
                received = "".join(e.text for e in events if isinstance(e, Token))
                found, missing = leaked(received, case)
                leaks["python"][0] += found
                leaks["python"][1] += missing
                leaks["python"][2] += 1
                assert isinstance(events[-1], Done)

        asyncio.run(python_api())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, llm=llm), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"

    async def served() -> None:
        gate = asyncio.Semaphore(16)

        async def one(key: str) -> None:
            async with gate:
                got = await http_surfaces(base, key)
            case = cases[int(key.split("-")[0])]
            for name, received in got.items():
                found, missing = leaked(received, case)
                leaks[name][0] += found
                leaks[name][1] += missing
                leaks[name][2] += 1

        await asyncio.gather(*(one(key) for key in scripts))

    asyncio.run(served())
    client = Client(base)
    for key in list(scripts)[:: max(1, len(scripts) // 1000)]:
        case = cases[int(key.split("-")[0])]
        received = client.ask(f"case {key}").text
        found, missing = leaked(received, case)
        leaks["client"][0] += found
        leaks["client"][1] += missing
        leaks["client"][2] += 1
    server.should_exit = True
    print(f"\nleak test: {len(cases)} answers x {args.splits} splits")
    print(
        f"{'surface':8} {'streams':>8} {'forbidden strings received':>27} {'near misses lost':>17}"
    )
    for name, (found, missing, streams) in leaks.items():
        print(f"{name:8} {streams:8} {found:27} {missing:17}")

    cancellation(work)


def cancellation(work: Path) -> None:
    (work / "block.toml").write_text(
        '[[rule]]\nclass = "rude"\nwords = ["lazy dog"]\naction = "block"\n', encoding="utf-8"
    )
    mock_port, port = _free_port(), _free_port()
    mock = subprocess.Popen(
        [
            sys.executable,
            str(SHARED / "bench" / "mockllm.py"),
            "--port",
            str(mock_port),
            "--first-token-ms",
            "200",
            "--inter-token-ms",
            "20",
            "--tokens",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{mock_port}/health")
        settings = load_settings(
            home=work / "home",
            kb="bench",
            embed_model="use-m3",
            condense="off",
            moderation_rules=work / "block.toml",
            llm_base_url=f"http://127.0.0.1:{mock_port}/v1",
            llm_model="mock",
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        answers = []
        for _ in range(20):
            answers.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat", json={"question": "退货"}, timeout=60
                ).json()
            )
        time.sleep(0.5)
        records = json.load(urllib.request.urlopen(f"http://127.0.0.1:{mock_port}/stats"))
        server.should_exit = True
    finally:
        mock.terminate()
    generations = records.get("generations") or records.get("records") or []
    written = [g.get("tokens_written", g.get("tokens_sent")) for g in generations]
    dog = 8  # " dog" is the 8th token the mock streams: the[1] quick brown fox jumps over lazy dog
    print(
        f"\ncancellation: {len(answers)} answers, finish"
        f" {sorted({a['finish_reason'] for a in answers})};"
        f' tokens the mock wrote: {sorted(written)} ("dog" is token {dog}: after it'
        f" at most {max(written) - dog})"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url)
            return
        except OSError:
            time.sleep(0.05)


if __name__ == "__main__":
    main()

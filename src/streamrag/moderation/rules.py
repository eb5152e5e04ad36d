"""Moderation rules, read from a TOML file.

::

    refusal = "抱歉，这个问题我无法回答。"        # the answer to a refused question

    [[rule]]
    class = "insult"                 # what events, metrics and run records name
    words = ["傻瓜", "idiot"]        # and/or words_file = "insults.txt" (one per line)
    action = "mask"                  # mask | block | refuse (refuse: input only)
    on = ["input", "output"]         # the default; also "documents" (checked at ingest)

    [[rule]]
    class = "pii"
    pii = ["cn_mobile", "cn_id_card", "bank_card", "email"]
    action = "mask"

    [[rule]]
    class = "internal"
    regex = "ACME-\\d{6}"
    action = "block"

    [[rule]]                         # an OpenAI-compatible /v1/moderations, per sentence; or
    class = "toxic"                  # a chat model: its /v1/chat/completions and a prompt
                                     # (classifier_prompt) that is answered yes or no
    classifier = "http://127.0.0.1:8000/v1/moderations"
    classifier_model = "omni-moderation-latest"
    api_key_env = "MODERATION_API_KEY"   # the environment variable holding its key
    on_error = "fail_closed"         # or fail_open (the default for mask)
    max_hold_chars = 300             # ask before a sentence ends once this much is held
    max_hold_ms = 2000               # ... or once the oldest held character waited this long
    action = "block"
    on = ["output"]

Every mistake is a :class:`RulesError` naming the file and the line.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import regex

from streamrag.errors import StreamragError
from streamrag.moderation.classifier import DEFAULT_MODEL, Classifier
from streamrag.moderation.detectors import PII, Detector, Pattern, WordList

Action = Literal["mask", "block", "refuse"]
Target = Literal["input", "output", "documents"]
ACTIONS: tuple[str, ...] = get_args(Action)
TARGETS: tuple[str, ...] = get_args(Target)
DEFAULT_REFUSAL = "抱歉，这个问题我无法回答。Sorry, I can't help with that."

_KINDS = ("words", "words_file", "pii", "regex", "classifier")
_CLASSIFIER_KEYS = (
    "classifier_model",
    "classifier_prompt",
    "api_key_env",
    "on_error",
    "max_hold_chars",
    "max_hold_ms",
)
_KEYS = frozenset({"class", "action", "on", *_KINDS, *_CLASSIFIER_KEYS})
_CLASS = re.compile(r"[\w.-]{1,64}")


class RulesError(StreamragError):
    """A moderation rules file that cannot be used: the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: what it looks for (``detectors``), what it does, where it applies."""

    rule_class: str
    action: Action
    targets: frozenset[Target]
    detectors: tuple[Detector, ...]
    classifier: Classifier | None = None  # asked about whole sentences


@dataclass(frozen=True, slots=True)
class Rules:
    """A rules file, read and checked."""

    rules: tuple[Rule, ...] = ()
    refusal: str = DEFAULT_REFUSAL
    source: str = ""  # the file it was read from
    digest: str = ""  # of the file and its word files: a change re-checks the documents

    def on(self, target: Target) -> list[Rule]:
        return [rule for rule in self.rules if target in rule.targets]

    def __add__(self, other: Rules) -> Rules:
        """Both rule sets; the other's refusal wins when it has its own."""
        refusal = other.refusal if other.refusal != DEFAULT_REFUSAL else self.refusal
        sources = " + ".join(filter(None, (self.source, other.source)))
        digest = hashlib.sha256(f"{self.digest}+{other.digest}".encode()).hexdigest()[:16]
        return Rules(self.rules + other.rules, refusal, sources, digest)


@dataclass(slots=True)
class _Place:
    path: Path
    lines: list[int] = field(default_factory=list)  # line of each [[rule]] header

    def error(self, index: int | None, message: str) -> RulesError:
        line = f":{self.lines[index]}" if index is not None and index < len(self.lines) else ""
        return RulesError(f"{self.path}{line}: {message}")


def load_rules(path: Path) -> Rules:
    """Read and check the rules file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read the moderation rules: {exc}") from exc
    return parse_rules(text, path)


def parse_rules(text: str, path: Path) -> Rules:
    """The rules in ``text`` (read from ``path``: word files are found beside it)."""
    place = _Place(path, [n for n, line in enumerate(text.splitlines(), 1) if _is_rule(line)])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"rule", "refusal"}
    if unknown:
        raise place.error(
            None, f"unknown setting {sorted(unknown)[0]!r} (expected refusal, [[rule]])"
        )
    refusal = data.get("refusal", DEFAULT_REFUSAL)
    if not isinstance(refusal, str) or not refusal.strip():
        raise place.error(None, "refusal must be a non-empty string")
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise place.error(None, "rules are written as [[rule]] tables")
    digest = hashlib.sha256(text.encode())
    rules = tuple(_rule(entry, index, place, digest) for index, entry in enumerate(entries))
    return Rules(rules, refusal, str(path), digest.hexdigest()[:16])


def _is_rule(line: str) -> bool:
    return line.strip().replace(" ", "").startswith("[[rule]]")


def _rule(entry: dict[str, Any], index: int, place: _Place, digest: Any) -> Rule:
    def fail(message: str) -> RulesError:
        name = entry.get("class")
        return place.error(index, f"rule {name!r}: {message}" if name else message)

    unknown = set(entry) - _KEYS
    if unknown:
        raise fail(
            f"unknown key {sorted(unknown)[0]!r} (expected one of {', '.join(sorted(_KEYS))})"
        )
    rule_class = entry.get("class")
    if not isinstance(rule_class, str) or not _CLASS.fullmatch(rule_class):
        raise fail("class must be a name of letters, digits, '.', '-' or '_' (at most 64)")
    action = entry.get("action")
    if action not in ACTIONS:
        raise fail(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    targets = entry.get("on", ["input", "output"])
    if not isinstance(targets, list) or not targets or any(t not in TARGETS for t in targets):
        raise fail(f"on must list some of {', '.join(TARGETS)}, not {targets!r}")
    if action == "refuse" and targets != ["input"]:
        raise fail("refuse answers a question instead of the model: it applies to input only")
    if not any(kind in entry for kind in _KINDS):
        raise fail(f"say what to look for: one of {', '.join(_KINDS)}")
    detectors: list[Detector] = []
    words = _strings(entry.get("words", []), "words", fail)
    if "words_file" in entry:
        words += _word_file(entry["words_file"], place.path.parent, fail)
        digest.update("\n".join(words).encode())
    if words:
        detectors.append(WordList(words))
    for name in _strings(entry.get("pii", []), "pii", fail):
        if name not in PII:
            raise fail(f"unknown pii detector {name!r} (choose from {', '.join(PII)})")
        detectors.append(PII[name]())
    if "regex" in entry:
        pattern = entry["regex"]
        if not isinstance(pattern, str) or not pattern:
            raise fail("regex must be a non-empty string")
        try:
            detectors.append(Pattern(pattern))
        except regex.error as exc:
            raise fail(f"invalid regex {pattern!r}: {exc}") from exc
        if regex.match(pattern, ""):
            raise fail(f"regex {pattern!r} matches empty text")
    classifier = _classifier(entry, action, targets, fail) if "classifier" in entry else None
    return Rule(rule_class, action, frozenset(targets), tuple(detectors), classifier)


def _classifier(entry: dict[str, Any], action: str, targets: list[str], fail: Any) -> Classifier:
    url = entry["classifier"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise fail(f"classifier must be an http(s) URL (/v1/moderations), not {url!r}")
    prompt = entry.get("classifier_prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise fail("classifier_prompt must be a non-empty string")
    if "documents" in targets:
        raise fail("a classifier checks questions and answers, not documents")
    on_error = entry.get("on_error", "fail_open" if action == "mask" else "fail_closed")
    if on_error not in ("fail_open", "fail_closed"):
        raise fail(f"on_error must be fail_open or fail_closed, not {on_error!r}")
    key_env = entry.get("api_key_env")
    if key_env is not None and (not isinstance(key_env, str) or key_env not in os.environ):
        raise fail(f"api_key_env names {key_env!r}, which is not set in the environment")
    limits = {}
    for key, low in (("max_hold_chars", 1), ("max_hold_ms", 1)):
        if key in entry:
            value = entry[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
                raise fail(f"{key} must be a number of at least {low}, not {value!r}")
            limits[key] = int(value) if key == "max_hold_chars" else float(value)
    return Classifier(
        url,
        model=str(entry.get("classifier_model", DEFAULT_MODEL)),
        api_key=os.environ[key_env] if key_env else None,
        on_error=on_error,
        prompt=prompt,
        **limits,
    )


def _strings(value: Any, key: str, fail: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{key} must be a list of strings")
    return list(value)


def _word_file(name: Any, folder: Path, fail: Any) -> list[str]:
    if not isinstance(name, str) or not name:
        raise fail("words_file must name a file")
    path = (folder / name).resolve()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read words_file {str(path)!r}: {exc}") from exc
    return [word for line in lines if (word := line.strip()) and not word.startswith("#")]

"""The ``streamrag`` command: a thin layer over :mod:`streamrag.kb`."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from streamrag.answer.events import (
    Done,
    Error,
    Event,
    Moderation,
    Source,
    Sources,
    Status,
    Token,
)
from streamrag.answer.prompt import heading, language_of
from streamrag.config import CONFIG_ENV, Settings, load_settings
from streamrag.errors import StreamragError
from streamrag.ingest.pipeline import IngestEvent, IngestReport
from streamrag.kb import (
    KnowledgeBase,
    drop_knowledge_base,
    knowledge_base_exists,
    list_knowledge_bases,
)
from streamrag.retrieve.retriever import MODES
from streamrag.store import SearchFilter

if TYPE_CHECKING:
    from streamrag.rag import RAG

app = typer.Typer(
    help="Answer questions over your own documents (Chinese and English), offline by default.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kb_app = typer.Typer(help="List, inspect and delete knowledge bases.", no_args_is_help=True)
eval_app = typer.Typer(
    help="Measure retrieval and answer quality on an evaluation set.", no_args_is_help=True
)
db_app = typer.Typer(help="The database's schema.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)

KbOption = Annotated[
    str | None, typer.Option("--kb", help="Knowledge base name (default: STREAMRAG_KB or default).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option("--home", help="Data directory (env: STREAMRAG_HOME).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help=f"TOML config file (env: {CONFIG_ENV}).", exists=True),
    ] = None,
    embed_model: Annotated[
        str | None,
        typer.Option("--embed-model", help="e5-small, use-m3, or an API model name."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="postgresql://... to keep everything in PostgreSQL (env: "
            "STREAMRAG_DATABASE_URL); default: the embedded files in the data directory.",
        ),
    ] = None,
) -> None:
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    # a broken PDF is reported as that file's failure; pypdf's own warnings about it
    # ("EOF marker not found") would only break the progress bars
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    ctx.obj = {"home": home, "embed_model": embed_model, "database_url": database_url}


def _settings(ctx: typer.Context, **overrides: Any) -> Settings:
    return load_settings(**ctx.obj, **overrides)


class RateColumn(ProgressColumn):
    """Items per second of a task, on average since it started (a burst of files finishing
    together is not "95,000 files/s")."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or elapsed < 1 or not task.completed:
            return Text(f"     - {unit}/s", style="cyan")
        return Text(f"{task.completed / elapsed:6.1f} {unit}/s", style="cyan")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[now]}", markup=True),
        console=err_console,
        transient=False,
    )


def run_with_progress(events: Iterator[IngestEvent], *, show: bool = True) -> IngestReport:
    """Drain ingest events into a report, drawing two bars: the files read (naming the one
    being read) and the chunks embedded, whose total — and so its ETA — is shown once every
    file has been read. Failed and ignored files are named."""
    with _progress() as progress:
        if not show:
            progress.stop()
        files = progress.add_task("files", total=None, unit="files", now="")
        chunks = progress.add_task("chunks", total=None, unit="chunks", now="")
        to_read, read, planned = 0, 0, 0

        def draw(event: IngestEvent) -> None:
            nonlocal to_read, read, planned
            if event.kind == "found":
                to_read = event.count
                progress.update(files, total=to_read)
            elif event.kind == "reading":
                read += 1
                progress.update(files, completed=read - 1, now=escape(Path(event.path or "").name))
            elif event.kind == "planned":
                planned += event.count
            elif event.kind == "embedded":
                progress.advance(chunks, event.count)
            elif event.kind == "file" and event.status == "failed" and show:
                progress.console.print(
                    f"[red]failed[/red] {escape(event.path or '')}: {escape(event.reason or '')}",
                    soft_wrap=True,
                )
            elif event.kind == "file" and event.status == "ingested" and event.reason and show:
                progress.console.print(
                    f"[dim]{escape(event.path or '')}: {escape(event.reason)}[/dim]",
                    soft_wrap=True,
                )
            elif event.kind == "file" and event.status == "ignored" and show:
                progress.console.print(
                    f"[yellow]ignored[/yellow] {escape(event.path or '')} (not a supported type)",
                    soft_wrap=True,
                )
            if read == to_read and event.kind in ("embedded", "file"):  # every file is read
                progress.update(files, completed=to_read, now="")
                progress.update(chunks, total=planned)

        report = IngestReport.collect(events, draw)
        progress.update(files, completed=to_read, now="")
        progress.update(chunks, total=report.chunks, completed=report.chunks)
        return report


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(1)


@contextmanager
def _reported() -> Iterator[None]:
    """Print a streamrag error as one red line and exit with status 1."""
    try:
        yield
    except StreamragError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (read recursively).")],
    kb: KbOption = None,
    sync: Annotated[
        bool, typer.Option("--sync", help="Remove documents whose files are gone.")
    ] = False,
    chunk_size: Annotated[int | None, typer.Option(help="Chunk size in characters.")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="Overlap in characters.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest .txt .md .pdf .docx .html .jsonl files into a knowledge base.

    Unchanged documents are skipped; changed ones are replaced. Exits with 1 when some
    files failed (they are named with the reason; the others are ingested).
    """
    with _reported():
        settings = _settings(ctx, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        with KnowledgeBase(kb, settings=settings) as base:
            report = run_with_progress(base.ingest_events(paths, sync=sync), show=not as_json)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        console.print(
            f"{len(report.ingested)} ingested ({report.chunks} chunks), "
            f"{len(report.unchanged)} unchanged, {len(report.failed)} failed, "
            f"{len(report.ignored)} ignored, {report.removed} removed "
            f"in {report.seconds:.1f} s"
        )
        if report.fusion:
            console.print(f"fusion: {escape(report.fusion)}", highlight=False)
        if not knowledge_base_exists(base.name, settings):
            err_console.print(
                f"[yellow]nothing was ingested: knowledge base {escape(repr(base.name))} "
                "was not created[/yellow]"
            )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    kb: KbOption = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=1000)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, vector or bm25.")] = "hybrid",
    path: Annotated[
        str | None, typer.Option("--path", help="Only documents whose path matches this glob.")
    ] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="Only these document ids.")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Only documents with KEY=VALUE metadata.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the chunks that best match QUERY, best first."""
    if mode not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    where = SearchFilter(
        doc_ids=tuple(doc or ()), source_glob=path, meta=tuple(_parse_meta(meta or []))
    )
    with _reported(), KnowledgeBase(kb, settings=_settings(ctx), create=False) as base:
        hits = base.search(query, k=k, mode=mode, where=where)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        console.print("no results")
    for hit in hits:
        c = hit.chunk
        where_text = f" · {c.location}" if c.location else ""
        console.print(
            f"[bold]{hit.rank}.[/bold] [cyan]{hit.score:.4f}[/cyan] "
            f"[bold]{escape(c.title)}[/bold]{escape(where_text)}  "
            f"[dim]{escape(display_source(c.source))}[/dim]",
            soft_wrap=True,
        )
        snippet = c.text if len(c.text) <= 240 else c.text[:240] + "…"
        console.print(f"   {escape(snippet)}", highlight=False)


def _parse_meta(items: list[str]) -> Iterator[tuple[str, str]]:
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--meta")
        yield key, value


@kb_app.command("list")
def kb_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the knowledge bases."""
    with _reported():
        infos = list_knowledge_bases(_settings(ctx))
    if as_json:
        rows = [
            {
                "name": i.name,
                "documents": i.documents,
                "chunks": i.chunks,
                "embed_model": i.embed_model,
                "fusion": i.fusion,
                "size_bytes": i.size_bytes,
                "location": i.location,
            }
            for i in infos
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("name", "documents", "chunks", "embedding model", "fusion", "size")
    for info in infos:
        table.add_row(
            info.name,
            str(info.documents),
            str(info.chunks),
            info.embed_model or "-",
            info.fusion,
            f"{info.size_bytes / 1e6:.1f} MB",
        )
    console.print(table)


@kb_app.command("tune")
def kb_tune(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The knowledge base.")],
    as_json: JsonOption = False,
) -> None:
    """Choose how NAME's hybrid search fuses BM25 and vectors, from pseudo-queries drawn from
    its own chunks (ingest does it too when the chunk count moves by a quarter)."""
    with _reported(), KnowledgeBase(name, settings=_settings(ctx), create=False) as base:
        tuning = base.tune()
    if as_json:
        print(tuning.to_json())
        return
    console.print(f"fusion: {escape(str(tuning))}", highlight=False)
    for candidate, mrr in sorted(tuning.scores.items(), key=lambda item: -item[1]):
        console.print(f"  {mrr:.3f}  {escape(candidate)}", highlight=False)


@kb_app.command("rules")
def kb_rules(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The knowledge base.")],
    rules: Annotated[
        Path | None, typer.Argument(help="Its own moderation rules file (TOML).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Drop its own rules file.")] = False,
) -> None:
    """Show the moderation rules NAME answers under, or give it its own file of rules (on
    top of STREAMRAG_MODERATION_RULES). Documents are checked again at their next ingest."""
    with _reported(), KnowledgeBase(name, settings=_settings(ctx), create=False) as base:
        if rules is not None or clear:
            active = base.set_moderation_rules(None if clear else rules)
        else:
            active = base.moderation_rules()
    if not active.rules:
        console.print("no moderation rules")
        return
    console.print(f"rules from {escape(active.source)}", highlight=False)
    for rule in active.rules:
        targets = ", ".join(sorted(rule.targets))
        console.print(f"  {escape(rule.rule_class)}: {rule.action} on {targets}", highlight=False)


@kb_app.command("docs")
def kb_docs(ctx: typer.Context, kb: KbOption = None, as_json: JsonOption = False) -> None:
    """List the documents of a knowledge base."""
    with _reported(), KnowledgeBase(kb, settings=_settings(ctx), create=False) as base:
        docs = base.documents()
    if as_json:
        rows = [
            {
                "doc_id": d.doc_id,
                "title": d.title,
                "source": d.source,
                "size": d.size,
                "chunks": d.n_chunks,
                "ingested_at": d.ingested_at,
                "content_hash": d.content_hash,
            }
            for d in docs
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("title", "chars", "chunks", "ingested")
    table.add_column("document id", overflow="fold")  # never cut: kb rm takes it
    for d in docs:
        table.add_row(
            escape(d.title), str(d.size), str(d.n_chunks), d.ingested_at[:16], escape(d.doc_id)
        )
    console.print(table)


@kb_app.command("rm")
def kb_rm(
    ctx: typer.Context,
    doc: Annotated[str, typer.Argument(help="Document id, or the path it was read from.")],
    kb: KbOption = None,
) -> None:
    """Remove a document (or every document read from a file) from a knowledge base."""
    with _reported(), KnowledgeBase(kb, settings=_settings(ctx), create=False) as base:
        removed = base.remove(doc)
    console.print(f"removed {removed} document{'s' if removed != 1 else ''}")


@kb_app.command("drop")
def kb_drop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base to delete.")],
) -> None:
    """Delete a knowledge base with all its documents."""
    with _reported():
        drop_knowledge_base(name, _settings(ctx))
    console.print(f"dropped knowledge base {name!r}")


@kb_app.command("migrate")
def kb_migrate(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="Knowledge bases to copy (default: all).")
    ] = None,
    to: Annotated[str, typer.Option("--to", help="The target: postgresql://...")] = "",
    history: Annotated[bool, typer.Option(help="Copy the sessions and run records too.")] = True,
) -> None:
    """Copy knowledge bases (documents, chunks, vectors) and the history into another
    backend, such as PostgreSQL. Run it again to finish a copy that stopped."""
    from streamrag.backends import open_backend
    from streamrag.migrate import copy_history, copy_knowledge_base

    if not to:
        raise typer.BadParameter("name the target database", param_hint="--to")
    settings = _settings(ctx)
    with _reported():
        source = open_backend(settings)
        target = open_backend(settings.model_copy(update={"database_url": to}))
        try:
            for name in names or [info.name for info in source.catalog.list()]:
                done = copy_knowledge_base(source, target, name)
                console.print(
                    f"knowledge base {escape(name)!r}: {done.copied} documents copied,"
                    f" {done.skipped} there already"
                )
            if history:
                done = copy_history(source, target)
                console.print(f"history: {done.copied} runs copied, {done.skipped} there already")
        finally:
            source.close()
            target.close()


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or upgrade streamrag's schema in the configured database (serve does it on
    start as well)."""
    from streamrag.backends import open_backend

    with _reported():
        backend = open_backend(_settings(ctx))
        try:
            applied = backend.upgrade()
        finally:
            backend.close()
    where = backend.catalog.location
    if applied:
        console.print(f"{escape(where)}: applied {', '.join(applied)}")
    else:
        console.print(f"{escape(where)}: the schema is up to date")


@kb_app.command("reembed")
def kb_reembed(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base to re-embed.")],
) -> None:
    """Re-embed every chunk with the configured embedding model (--embed-model)."""
    with _reported(), KnowledgeBase(name, settings=_settings(ctx), create=False) as base:
        count = base.reembed()
    console.print(f"re-embedded {count} chunks of {name!r}")


@eval_app.command("retrieval")
def eval_retrieval(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Folder with corpus.jsonl, queries.jsonl.")],
    kb: KbOption = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    modes: Annotated[
        list[str] | None, typer.Option("--mode", help="Modes to score (default: all).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest DATA/corpus.jsonl (once), run DATA/queries.jsonl and print the metrics per mode."""
    from streamrag.eval.retrieval import METRIC_KEYS, evaluate, load_queries, prepare_kb

    chosen = modes or list(MODES)
    for mode in chosen:
        if mode not in MODES:
            raise typer.BadParameter(f"choose from {', '.join(MODES)}", param_hint="--mode")
    with _reported():
        queries = load_queries(data / "queries.jsonl", limit)
        with prepare_kb(data, _settings(ctx), kb) as base:
            report = run_with_progress(
                base.ingest_events([data / "corpus.jsonl"]), show=not as_json
            )
            if not report.ok:
                raise _fail(f"could not ingest {data / 'corpus.jsonl'}: {report.failed}")
            results = evaluate(base, queries, chosen)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(results, indent=2))
        return
    table = Table("mode", *METRIC_KEYS, title=f"{data.name}: {len(queries)} queries")
    for mode, metrics in results.items():
        table.add_row(
            mode,
            *(
                f"{metrics[key]:.3f}" if "@" in key else f"{metrics[key]:.1f}"
                for key in METRIC_KEYS
            ),
        )
    console.print(table)


@eval_app.command("answers")
def eval_answers(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Folder with corpus.jsonl, queries.jsonl.")],
    kb: KbOption = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics and every answer as JSON.")
    ] = False,
) -> None:
    """Ingest DATA/corpus.jsonl (once), answer DATA/queries.jsonl and score the answers:
    hit rate, citation precision, time to first token, tokens/s."""
    from streamrag.eval.answers import evaluate_answers, load_answer_queries, result_dict
    from streamrag.eval.retrieval import prepare_kb
    from streamrag.rag import RAG

    with _reported():
        queries = load_answer_queries(data / "queries.jsonl", limit)
        settings = _settings(ctx)
        base = prepare_kb(data, settings, kb)
        report = run_with_progress(base.ingest_events([data / "corpus.jsonl"]), show=not as_json)
        if not report.ok:
            raise _fail(f"could not ingest {data / 'corpus.jsonl'}: {report.failed}")
        with RAG(base, settings=settings) as rag, _progress() as progress:
            _load_model(rag)
            if as_json:
                progress.stop()
            task = progress.add_task("answers", total=len(queries), unit="q", now="")
            metrics, results = evaluate_answers(rag, queries, lambda _: progress.advance(task))
    if as_json:
        metrics["results"] = [result_dict(result) for result in results]
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
        return
    table = Table("metric", "value", title=f"{data.name}: {len(queries)} questions")
    for key, value in metrics.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def demo(
    ctx: typer.Context,
    kb: Annotated[str, typer.Option("--kb", help="Knowledge base to build.")] = "demo",
    limit: Annotated[int, typer.Option(help="How many sample questions to answer.")] = 3,
) -> None:
    """Ingest the bundled bilingual sample documents and stream answers to sample questions."""
    from streamrag.rag import RAG
    from streamrag.sample import DOCS, questions

    with _reported(), RAG(kb, settings=_settings(ctx)) as rag:
        report = run_with_progress(rag.kb.ingest_events([DOCS]))
        if not report.ok:
            raise _fail(f"could not ingest the sample documents: {report.failed}")
        console.print(
            f"knowledge base {kb!r}: {len(rag.kb.documents())} documents from the bundled sample\n"
            f"model: {escape(_load_model(rag))}\n"
        )
        for sample in questions()[:limit]:
            console.print(f"[bold]Q: {escape(sample.question)}[/bold]")
            _print_answer(rag.stream_events(sample.question))
            console.print()
    console.print(_next_steps(kb), highlight=False, soft_wrap=True)


def _next_steps(kb: str) -> str:
    """What to do after the demo: the page, the terminal chat, your own documents, a
    stronger model."""
    serve = "streamrag serve" + ("" if kb == "demo" else f" --kb {kb}")
    return escape(
        "Next:\n"
        f"  {serve}\n"
        f"      then open http://127.0.0.1:8000 — the page opens on knowledge base {kb!r}\n"
        f"  streamrag chat --kb {kb}\n"
        "      chat in the terminal\n"
        "  streamrag ingest DOCS/ --kb mine\n"
        "      your own documents (.txt .md .pdf .docx .html .jsonl)\n"
        "A stronger model:\n"
        "  pip install 'streamrag[quality]', then STREAMRAG_LLM_MODEL=qwen2.5-coder-1.5b\n"
        "  or any OpenAI-compatible API: set STREAMRAG_LLM_BASE_URL, STREAMRAG_LLM_MODEL\n"
        "  and STREAMRAG_LLM_API_KEY, e.g.\n"
        "      Ollama    http://127.0.0.1:11434/v1  qwen2.5:7b\n"
        "      DeepSeek  https://api.deepseek.com/v1  deepseek-chat\n"
        "      Qwen      https://dashscope.aliyuncs.com/compatible-mode/v1  qwen-plus"
    )


def display_source(source: str) -> str:
    """A document's source as a person wants to read it: a path relative to the current
    folder when it is inside, else its last two parts (not a long site-packages path)."""
    path = Path(source)
    if not path.is_absolute():
        return source
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def _load_model(rag: RAG) -> str:
    """Load the answer model with a spinner; return its name."""
    with err_console.status("loading the answer model…"):
        return rag.engine.llm.name


def _print_answer(events: Iterator[Event], *, as_json: bool = False) -> Done | None:
    """Print tokens as they arrive, then the numbered sources and a timing line.

    With ``as_json`` every event is one JSON line. Ctrl-C stops the answer (the run is
    recorded as cancelled) and is raised on to the caller.
    """
    sources: list[Source] = []
    done: Done | None = None
    stopped: Moderation | None = None  # the rule that blocked the answer or refused the question
    with closing(events):  # an exception here (Ctrl-C, a closed pipe) stops the run at once
        for event in events:
            if as_json:
                print(event.to_json(), flush=True)
            if isinstance(event, Sources):
                sources = event.sources
            elif isinstance(event, Token) and not as_json:
                console.out(event.text, end="", highlight=False)
                console.file.flush()
            elif isinstance(event, Status) and event.queue_position and not as_json:
                err_console.print(
                    f"[dim]waiting for the model: {event.queue_position} answer(s) first…[/dim]"
                )
            elif isinstance(event, Moderation) and event.action != "mask":
                stopped = event
            elif isinstance(event, Error) and not as_json:
                console.out("")
                err_console.print(
                    f"[red]error ({escape(event.code)}):[/red] {escape(event.message)}"
                )
            elif isinstance(event, Done):
                done = event
    if as_json or done is None:
        return done
    console.out("")
    console.file.flush()
    if stopped is not None:
        how = "refused" if stopped.action == "refuse" else "stopped"
        err_console.print(
            f"[yellow]{how} by moderation (rule {escape(stopped.rule_class)!r}, "
            f"{stopped.target})[/yellow]"
        )
    # a source's mark, as the legend says: cited and supported, else cited, else inferred
    marks = ("[green]●[/green]", "[yellow]?[/yellow]", "[cyan]≈[/cyan]")
    best: dict[int, int] = {}
    for citation in done.citations:
        kind = 2 if citation.inferred else 1 if citation.supported is False else 0
        best[citation.number] = min(kind, best.get(citation.number, kind))
    english = language_of(done.standalone_question or "") == "en"
    if sources:
        legend = (
            "● cited, ? cited but not found there, ≈ not cited but it says so, ○ not cited"
            if english
            else "● 回答中引用，? 引用了但来源中未找到，≈ 未引用但来源支持，○ 未引用"
        )
        console.print(
            f"[bold]{'Sources' if english else '来源'}[/bold]  [dim]{legend}[/dim]", soft_wrap=True
        )
    for source in sources:
        mark = marks[best[source.number]] if source.number in best else "[dim]○[/dim]"
        console.print(  # one line per source: a terminal wraps it, a pipe keeps it whole
            f" {mark} [{source.number}] {escape(heading(source))}  "
            f"[dim]{escape(display_source(source.source))}[/dim]",
            highlight=False,
            soft_wrap=True,
        )
    timings = done.timings
    parts = [f"finish {done.finish_reason}"]
    if "ttft_ms" in timings:
        parts.append(f"first token {timings['ttft_ms'] / 1000:.2f} s")
    parts.append(f"total {timings.get('total_ms', 0) / 1000:.2f} s")
    if done.usage.get("completion_tokens"):
        parts.append(f"{done.usage['completion_tokens']} tokens")
    masked = sum(m.count for m in done.moderation if m.action == "mask")
    if masked:
        parts.append(f"{masked} masked")
    err_console.print(f"[dim]{' · '.join(parts)}[/dim]", highlight=False)
    return done


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KbOption = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Continue this conversation.")
    ] = None,
    top_k: Annotated[int | None, typer.Option("-k", "--top-k", min=1, max=50)] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Ask a running 'streamrag serve' at this URL.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="STREAMRAG_API_KEY", help="For --url.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events as JSON lines.")
    ] = False,
) -> None:
    """Answer QUESTION from the knowledge base, streaming the answer, then its sources."""
    with _reported():
        if url:
            from streamrag.client import Client

            events = Client(url, api_key).stream(question, session, kb=kb, top_k=top_k)
            done = _print_answer(events, as_json=as_json)
        else:
            from streamrag.rag import RAG

            settings = _settings(ctx, answer_top_k=top_k)
            with RAG(kb, settings=settings, create=False) as rag:
                done = _print_answer(
                    rag.stream_events(question, session_id=session), as_json=as_json
                )
    if done is not None and done.finish_reason == "error":
        raise typer.Exit(1)


@app.command()
def chat(
    ctx: typer.Context,
    kb: KbOption = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Continue this conversation.")
    ] = None,
) -> None:
    """Multi-turn chat. Ctrl-C stops the current answer; Ctrl-D, /exit or Ctrl-C at the prompt
    leaves; /new starts a new conversation."""
    import uuid

    from streamrag.rag import RAG

    session_id = session or uuid.uuid4().hex
    with _reported(), RAG(kb, settings=_settings(ctx), create=False) as rag:
        err_console.print(
            f"[dim]knowledge base {escape(rag.kb.name)} · model {escape(_load_model(rag))} · "
            f"session {session_id}[/dim]"
        )
        while True:
            try:
                question = console.input("[bold cyan]› [/bold cyan]").strip()
            except (EOFError, KeyboardInterrupt):
                console.out("")
                break
            if question in ("/exit", "/quit"):
                break
            if question == "/new":
                session_id = uuid.uuid4().hex
                err_console.print(f"[dim]new session {session_id}[/dim]")
                continue
            if not question:
                continue
            try:
                _print_answer(rag.stream_events(question, session_id=session_id))
            except KeyboardInterrupt:
                console.out("")
                err_console.print("[yellow]stopped[/yellow]")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    kb: Annotated[
        str | None,
        typer.Option(
            "--kb", help="Knowledge base when a request names none, and the page's first."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis shared with the other replicas (env: STREAMRAG_REDIS_URL).",
        ),
    ] = None,
) -> None:
    """Serve the web page and the HTTP API (SSE, OpenAI-compatible) on HOST:PORT."""
    import uvicorn

    from streamrag.server import create_app
    from streamrag.server.observe import configure_logging

    with _reported():
        application = create_app(_settings(ctx, kb=kb, redis_url=redis_url))
    configure_logging()
    uvicorn.run(application, host=host, port=port, log_config=None, timeout_graceful_shutdown=10)


def main() -> None:
    """Entry point of the ``streamrag`` script."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

"""Ingestion: loaders for each file type, clean-up, chunking and the pipeline that stores them."""

from streamrag.ingest.pipeline import IngestEvent, IngestReport, ingest

__all__ = ["IngestEvent", "IngestReport", "ingest"]

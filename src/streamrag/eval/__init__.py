"""Evaluation of retrieval (and later answers) on public question sets."""

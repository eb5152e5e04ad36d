"""Answering: the pieces the streaming answer engine is built from."""

"""streamrag: answers over your own documents, streamed with their sources."""

from streamrag.client import Client
from streamrag.config import Settings, load_settings
from streamrag.errors import StreamragError
from streamrag.kb import KnowledgeBase, drop_knowledge_base, list_knowledge_bases
from streamrag.rag import RAG, Answer
from streamrag.records import Chunk, DocumentInfo, SearchHit
from streamrag.store import SearchFilter

__version__ = "0.1.0"

__all__ = [
    "RAG",
    "Answer",
    "Chunk",
    "Client",
    "DocumentInfo",
    "KnowledgeBase",
    "SearchFilter",
    "SearchHit",
    "Settings",
    "StreamragError",
    "drop_knowledge_base",
    "list_knowledge_bases",
    "load_settings",
]

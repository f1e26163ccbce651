"""The published serving file the marketplace reads: its schema, publishing it, reading it,
the HTTP API over it, and what it may reveal about a customer (privacy).

The names below are the package's public API; ``schema``, ``publisher`` and ``reader`` hold them.
"""

from ml.serving.publisher import (
    PublishError,
    PublishResult,
    publish,
    remove_abandoned_temp_files,
)
from ml.serving.reader import (
    ServingReader,
    ServingUnavailable,
    cursor,
    fallback_for_user,
    open_serving,
    pseudonym_key_id,
    publication_info,
    recommendations_for_user,
    similar_items,
)

__all__ = [
    "PublishError",
    "PublishResult",
    "ServingReader",
    "ServingUnavailable",
    "cursor",
    "fallback_for_user",
    "open_serving",
    "publication_info",
    "pseudonym_key_id",
    "publish",
    "recommendations_for_user",
    "remove_abandoned_temp_files",
    "similar_items",
]

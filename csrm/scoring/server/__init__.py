"""``csrm serve``'s library part: a JSON API over HTTP (FastAPI + uvicorn) with dynamic batching.

- :mod:`~csrm.scoring.server.schema`: request/response models and validation into items;
- :mod:`~csrm.scoring.server.batching`: the batcher (order of service, admission);
- :mod:`~csrm.scoring.server.app`: the FastAPI app (endpoints, errors) and its auth and body-limit middleware.

The command itself (settings, token reading, uvicorn) is :mod:`csrm.app.serve`.
"""

from csrm.scoring.server.app import MAX_BODY_BYTES, MAX_ITEMS, BearerAuth, BodyLimit, create_app, display_name
from csrm.scoring.server.batching import Batcher, Busy, estimate_tokens

__all__ = ["MAX_BODY_BYTES", "MAX_ITEMS", "Batcher", "BearerAuth", "BodyLimit", "Busy", "create_app",
           "display_name", "estimate_tokens"]

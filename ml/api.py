"""HTTP service over the serving database: ``recsys api [--host 127.0.0.1] [--port 8000]``.

- ``GET /recommendations/{user_id}?n=20&platform=`` -- the personal list, else the fallback
- ``GET /items/{item_id}/similar?user_id=&n=20``  -- product page list
- ``GET /health``                                   -- publication row and table row counts

Ids are decimal digits, 1-40 characters; anything else is answered 422 before any query
runs, and queries are always parameterised. The serving file is opened read-only (ATTACH,
see ``ml.serving``) and reopened when a new file is published (checked by ``stat`` at most
every ``check_interval`` seconds), so no restart is needed. The service never takes a lock
that a publisher waits for: publishers write a different file and ``os.replace`` it.

When the serving file's user ids are pseudonyms (``publication.pseudonymized``, see
``ml.privacy``), requests still name users by their raw id: the service maps it with the key
it was given (``recsys api`` reads the home's ``secrets/pseudonym.key``), and answers 503 when
it has no key or another one. The interactive ``/docs`` page loads Swagger UI from a CDN, so it
is off unless asked for (``recsys api --docs``); ``/openapi.json`` is always served.
"""
from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import duckdb
from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ml import privacy, serving
from ml.config import default

log = logging.getLogger(__name__)

ID_PATTERN = r"^[0-9]{1,40}$"
ID_RULE = "ids are decimal digits, 1 to 40 characters"
MAX_N = 100

UserId = Annotated[str, PathParam(pattern=ID_PATTERN, description=ID_RULE)]
ItemId = Annotated[str, PathParam(pattern=ID_PATTERN, description=ID_RULE)]


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def _json(body: dict) -> Response:
    """Serialise directly (FastAPI's generic encoder costs more than the query)."""
    return Response(json.dumps(body, default=_iso, separators=(",", ":")), media_type="application/json")


def create_app(serving_db: Path, *, check_interval: float = 0.05, pseudonym_key: bytes | None = None,
               key_source: str = "given to the service", docs: bool = False,
               default_n: int = default("top_n")) -> FastAPI:
    """The ASGI app; ``check_interval`` bounds how often the file is ``stat``-ed.

    ``pseudonym_key`` maps raw user ids when the file holds pseudonyms (``key_source`` says
    where it came from, for the error). ``docs`` serves the Swagger page, whose script and
    style come from a CDN: development only. ``default_n``: list length when a request gives
    no ``n``, the published lists' length (``Config.top_n``).
    """
    reader = serving.ServingReader(Path(serving_db), check_interval=check_interval)

    def session(user_id: str | None) -> tuple[duckdb.DuckDBPyConnection, str | None, bool]:
        """A cursor, the user id as the file spells it, and whether the file's ids are pseudonyms."""
        cur, key_id = reader.session()
        try:
            key = privacy.reader_key(key_id, pseudonym_key, key_source)
        except privacy.PseudonymKeyError:
            cur.close()
            raise
        if key is not None and user_id is not None:
            user_id = privacy.pseudonym(key, user_id)
        return cur, user_id, key is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        reader.close()

    app = FastAPI(title="recsys serving", version="1", docs_url="/docs" if docs else None, redoc_url=None,
                  lifespan=lifespan)
    app.state.reader = reader

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
                    for e in exc.errors()]
        return JSONResponse(status_code=422, content={
            "error": "invalid request", "rule": f"{ID_RULE}; n is 1..{MAX_N}",
            "detail": problems})

    @app.exception_handler(serving.ServingUnavailable)
    async def _unavailable(request: Request, exc: serving.ServingUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": "no serving database published yet"})

    @app.exception_handler(privacy.PseudonymKeyError)
    async def _no_key(request: Request, exc: privacy.PseudonymKeyError) -> JSONResponse:
        log.error("%s", exc)
        return JSONResponse(status_code=503, content={"error": "the service cannot map user ids to the "
                                                               "serving file's pseudonyms", "detail": str(exc)})

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": "invalid request", "rule": ID_RULE,
                                                      "detail": [{"problem": str(exc)}]})

    @app.exception_handler(duckdb.Error)
    async def _db_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        log.exception("serving query failed")
        return JSONResponse(status_code=503, content={"error": "serving database error, retry"})

    @app.get("/recommendations/{user_id}")
    def recommendations(user_id: UserId,
                        n: Annotated[int, Query(ge=1, le=MAX_N)] = default_n,
                        platform: Literal["Site", "Android", "iOS"] | None = None) -> Response:
        cur, file_user_id, _ = session(user_id)
        try:
            rows = serving.recommendations_for_user(cur, file_user_id, n=n, platform=platform)
        finally:
            cur.close()
        first = rows[0] if rows else {}
        return _json({
            "user_id": user_id,
            "source": first.get("source"),
            "model_version": first.get("model_version"),
            "generated_at": _iso(first.get("generated_at")),
            "items": [{"item_id": r["item_id"], "rank": r["rank"], "score": r["score"],
                       "reason": r["reason"], "source": r["source"]} for r in rows],
        })

    @app.get("/items/{item_id}/similar")
    def similar(item_id: ItemId,
                user_id: Annotated[str | None, Query(pattern=ID_PATTERN, description=ID_RULE)] = None,
                n: Annotated[int, Query(ge=1, le=MAX_N)] = default_n) -> Response:
        cur, file_user_id, _ = session(user_id)
        try:
            rows = serving.similar_items(cur, item_id, user_id=file_user_id, n=n)
        finally:
            cur.close()
        return _json({
            "item_id": item_id,
            "user_id": user_id,
            "personalised": bool(rows and rows[0]["personalised"]),
            "source": rows[0]["source"] if rows else None,
            "items": [{"item_id": r["item_id"], "rank": r["rank"], "score": r["final_score"],
                       "source_score": r["score"], "source": r["source"]} for r in rows],
        })

    @app.get("/health")
    def health() -> Response:
        cur, _, pseudonymized = session(None)
        try:
            info = serving.publication_info(cur)
        finally:
            cur.close()
        return _json({
            "status": "ok",
            "model_version": info.get("model_version"),
            "generated_at": _iso(info.get("generated_at")),
            "as_of": _iso(info.get("as_of")),
            "n_users": info.get("n_users"),
            "n_rows": info.get("n_rows"),
            "row_counts": info["row_counts"],
            "pseudonymized": pseudonymized,
            "opened_at": _iso(reader.opened_at),
            "reloads": reader.reloads,
        })

    return app


def serve(serving_db: Path, host: str, port: int, *, log_level: str | None, home: Path | None = None,
          docs: bool = False, default_n: int = default("top_n")) -> None:
    """Run the service with uvicorn (blocking); ``home``'s pseudonym key, if it has one, maps
    user ids when the file holds pseudonyms. ``log_level`` None: uvicorn's own."""
    import uvicorn

    key = privacy.load_key(home) if home is not None else None
    where = str(privacy.key_path(home)) if home is not None else "no home given"
    app = create_app(serving_db, pseudonym_key=key, key_source=where, docs=docs, default_n=default_n)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)

"""HTTP service over the serving database: ``recsys api [--host H] [--port P] [--docs]``.

- ``GET /recommendations/{user_id}?n=&platform=`` -- the personal list, else the fallback
- ``GET /items/{item_id}/similar?user_id=&n=``    -- product page list
- ``GET /health``                                   -- publication row, table row counts, exposure log counts

Ids are decimal digits, 1-40 characters; anything else is answered 422 before any query
runs, and queries are always parameterised. The serving file is opened read-only (attach,
see ``ml.serving``) and reopened when a new file is published (checked by ``stat`` at most
every ``check_interval`` seconds), so no restart is needed. The service never takes a lock
that a publisher waits for: publishers write a different file and ``os.replace`` it.

When the serving file's user ids are pseudonyms (``publication.pseudonymized``, see
``ml.serving.privacy``), requests still name users by their raw id: the service maps it with the key
it was given (``recsys api`` reads the home's ``secrets/pseudonym.key``), and answers 503 when
it has no key or another one. ``/openapi.json`` is always served (its copy: docs/openapi.json);
the interactive ``/docs`` page only when asked for (``recsys api --docs``), with Swagger UI's
files served by the service itself, never from a CDN.

Every answer with items can be logged as exposures (``ml.serving.exposures``; ``recsys api``
logs to ``<home>/exposures`` unless ``RECSYS_EXPOSURE_LOG=0``): the list kind is ``personal``
(the user's own list, maybe topped up), ``fallback`` (a user without one), ``control`` or
``product_page``.

A control group (``control_share`` of the users, 0 by default; ``ml.serving.experiment``) gets
the cold-start list of its platform in place of its own list, logged as ``control``, so that
the outcome of the lists can be compared with the popular list's (``ml.monitoring.outcomes``).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import duckdb
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from ml import serving
from ml.config import default
from ml.serving import privacy
from ml.serving.experiment import in_control
from ml.serving.exposures import ExposureLog
from ml.vocabulary import PLATFORMS

log = logging.getLogger(__name__)

ID_PATTERN = r"^[0-9]{1,40}$"
ID_RULE = "ids are decimal digits, 1 to 40 characters"
MAX_N = 100

UserId = Annotated[str, PathParam(pattern=ID_PATTERN, description=ID_RULE)]
ItemId = Annotated[str, PathParam(pattern=ID_PATTERN, description=ID_RULE)]


class RecommendedItem(BaseModel):
    item_id: str
    rank: int = Field(description="1 = first; the order of the list")
    score: float = Field(
        description=(
            "Why the item is at its rank, comparable only with the scores of the same `source`. "
            "`personal` rows of the ranker's list (`publication.list_source` = `ranker`): the ranker's "
            "suitability score, the probability that the user buys the item within the label horizon, "
            "lowered for prices far above the user's usual range (0 to 1, not calibrated across runs). "
            "`personal` rows of a baseline's list (`list_source` = `baseline:<name>`, `reason` the same): "
            "that baseline's own score (a purchase count or a similarity, not a probability). "
            "`fallback:<platform>` rows: the item's decayed popularity on that platform (events weighted "
            "purchase 10, cart 4, view 1, halved every horizon), not a probability."
        )
    )
    reason: str = Field(
        description="`personal`, `trending`, `popular` or `baseline:<name>` on the user's own "
        "list; `popular_now` or `popular_overall` on fallback rows; never names an "
        "item of the user's (docs/privacy.md)"
    )
    source: str = Field(
        description="`personal` (the user's list) or `fallback:<platform>` (the cold-start "
        "list that tops up a short list or stands in for a missing one)"
    )


class Recommendations(BaseModel):
    user_id: str = Field(description="the id asked for (a raw id, also when the file holds pseudonyms)")
    source: str | None = Field(
        description="`source` of the first item: `personal`, or `fallback:<platform>` when the user has no list"
    )
    model_version: str | None = Field(description="the run that published the list")
    generated_at: datetime | None
    items: list[RecommendedItem]


class SimilarItem(BaseModel):
    item_id: str
    rank: int
    score: float = Field(
        description=(
            "The order (`final_score`): 1 / log2(source rank + 1); for a known user, x 1.5 when the item is "
            "in their list, x 1.25 when it is in their top category, and lowered when its price is above 3 x "
            "their tier price (docs/serving.md, product page)."
        )
    )
    source_score: float | None = Field(
        description=(
            "The source's own score: `bought_together`: the pair's confidence weighted by signal (purchase "
            "1, cart 0.5, view 0.25); `same_category`: popularity near the item's price; `fallback:<platform>`: "
            "decayed popularity."
        )
    )
    source: str = Field(description="`bought_together`, `same_category` or `fallback:<platform>`")


class SimilarItems(BaseModel):
    item_id: str
    user_id: str | None
    personalised: bool = Field(description="the user was known (a profile or a list) and the order uses it")
    source: str | None
    items: list[SimilarItem]


class ExposureCounts(BaseModel):
    logged: int = Field(description="items of answers queued for the exposure log since the service started")
    written: int = Field(description="of them, stored in the log's Parquet files")
    dropped: int = Field(description="items not logged: the queue was full or a write failed")


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str | None
    generated_at: datetime | None
    as_of: datetime | None = Field(description="the serving cutoff: the lists use events strictly before it")
    n_users: int | None
    n_rows: int | None
    row_counts: dict[str, int]
    pseudonymized: bool = Field(description="the file's user ids are pseudonyms (this service maps raw ids)")
    opened_at: datetime | None = Field(description="when this service opened the file it answers from")
    reloads: int = Field(description="new publications this service has switched to")
    exposures: ExposureCounts | None = Field(description="the exposure log's counts; null when it is off")


class Problem(BaseModel):
    where: str | None = Field(None, description="the parameter, e.g. `path.user_id`")
    problem: str


class InvalidRequest(BaseModel):
    error: Literal["invalid request"]
    rule: str
    detail: list[Problem]


class Unavailable(BaseModel):
    error: str = Field(
        description="no serving database published yet; the service cannot map user ids to "
        "the file's pseudonyms; or a serving database error (retry)"
    )
    detail: str | None = None


ERRORS = {
    422: {"model": InvalidRequest, "description": f"Invalid id, n or platform ({ID_RULE}; n is 1..{MAX_N})"},
    503: {"model": Unavailable, "description": "No serving database, no pseudonym key, or a database error"},
}


def _json(body: BaseModel) -> Response:
    """The model's own JSON (pydantic's serialiser), without FastAPI's generic encoder, which
    costs more than the query."""
    return Response(body.model_dump_json(), media_type="application/json")


def _error(status: int, body: BaseModel) -> JSONResponse:
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True))


def create_app(
    serving_db: Path,
    *,
    check_interval: float = 0.05,
    pseudonym_key: bytes | None = None,
    key_source: str = "given to the service",
    docs: bool = False,
    default_n: int = default("top_n"),
    exposures: ExposureLog | None = None,
    control_share: float = default("control_share"),
    control_salt: str = default("control_salt"),
) -> FastAPI:
    """The ASGI app; ``check_interval`` bounds how often the file is ``stat``-ed.

    ``pseudonym_key`` maps raw user ids when the file holds pseudonyms (``key_source`` says
    where it came from, for the error). ``docs`` serves the Swagger page (its files served
    locally). ``default_n``: list length when a request gives
    no ``n``, the published lists' length (``Config.top_n``). ``exposures``: the log every
    answer is recorded in (started and closed by the app's lifespan); None: none.
    ``control_share``, ``control_salt``: the control group (``ml.serving.experiment``), answered
    with the cold-start list of its platform.
    """
    reader = serving.ServingReader(Path(serving_db), check_interval=check_interval)

    def session(user_id: str | None) -> tuple[duckdb.DuckDBPyConnection, str | None, bool, str | None]:
        """A cursor, the user id as the file spells it, whether the file's ids are pseudonyms,
        and the file's model version."""
        cur, key_id, model_version = reader.session()
        try:
            key = privacy.reader_key(key_id, pseudonym_key, key_source)
        except privacy.PseudonymKeyError:
            cur.close()
            raise
        if key is not None and user_id is not None:
            user_id = privacy.pseudonym(key, user_id)
        return cur, user_id, key is not None, model_version

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if exposures is not None:
            exposures.start()
        try:
            yield
        finally:
            reader.close()
            if exposures is not None:
                exposures.close()

    # FastAPIOffline: the /docs page's script and style come from the installed package, not a CDN.
    app = FastAPIOffline(
        title="recsys serving", version="1", docs_url="/docs" if docs else None, redoc_url=None, lifespan=lifespan
    )
    app.state.reader = reader
    app.state.exposures = exposures

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            Problem(where=".".join(str(p) for p in e.get("loc", ())), problem=e.get("msg")) for e in exc.errors()
        ]
        return _error(422, InvalidRequest(error="invalid request", rule=f"{ID_RULE}; n is 1..{MAX_N}", detail=problems))

    @app.exception_handler(serving.ServingUnavailable)
    async def _unavailable(request: Request, exc: serving.ServingUnavailable) -> JSONResponse:
        return _error(503, Unavailable(error="no serving database published yet"))

    @app.exception_handler(privacy.PseudonymKeyError)
    async def _no_key(request: Request, exc: privacy.PseudonymKeyError) -> JSONResponse:
        log.error("%s", exc)
        return _error(
            503, Unavailable(error="the service cannot map user ids to the serving file's pseudonyms", detail=str(exc))
        )

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return _error(400, InvalidRequest(error="invalid request", rule=ID_RULE, detail=[Problem(problem=str(exc))]))

    @app.exception_handler(duckdb.Error)
    async def _db_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        log.exception("serving query failed")
        return _error(503, Unavailable(error="serving database error, retry"))

    @app.get("/recommendations/{user_id}", response_model=Recommendations, responses=ERRORS)
    def recommendations(
        user_id: UserId,
        n: Annotated[int, Query(ge=1, le=MAX_N)] = default_n,
        platform: Literal[PLATFORMS] | None = None,
    ) -> Response:
        """The user's personal list, topped up from the cold-start list of their platform when
        shorter than `n`; a user without one, or in the control group, gets that cold-start list."""
        control = in_control(user_id, control_share, control_salt)
        cur, file_user_id, _, model_version = session(user_id)
        try:
            if control:
                rows = serving.fallback_for_user(cur, file_user_id, n=n, platform=platform)
            else:
                rows = serving.recommendations_for_user(cur, file_user_id, n=n, platform=platform)
        finally:
            cur.close()
        first = rows[0] if rows else {}
        if exposures is not None and rows:
            exposures.record(
                "control" if control else "personal" if first["source"] == "personal" else "fallback",
                [(r["item_id"], r["rank"], r["source"]) for r in rows],
                user_id=user_id,
                model_version=model_version,
            )
        return _json(
            Recommendations(
                user_id=user_id,
                source=first.get("source"),
                model_version=first.get("model_version"),
                generated_at=first.get("generated_at"),
                items=[
                    RecommendedItem(
                        item_id=r["item_id"], rank=r["rank"], score=r["score"], reason=r["reason"], source=r["source"]
                    )
                    for r in rows
                ],
            )
        )

    @app.get("/items/{item_id}/similar", response_model=SimilarItems, responses=ERRORS)
    def similar(
        item_id: ItemId,
        user_id: Annotated[str | None, Query(pattern=ID_PATTERN, description=ID_RULE)] = None,
        n: Annotated[int, Query(ge=1, le=MAX_N)] = default_n,
    ) -> Response:
        """The product page: items bought together with this one, else popular items of its
        category near its price, else the cold-start list; re-ordered for a known user."""
        cur, file_user_id, _, model_version = session(user_id)
        try:
            rows = serving.similar_items(cur, item_id, user_id=file_user_id, n=n)
        finally:
            cur.close()
        if exposures is not None and rows:
            exposures.record(
                "product_page",
                [(r["item_id"], r["rank"], r["source"]) for r in rows],
                user_id=user_id,
                model_version=model_version,
                anchor_item_id=item_id,
            )
        return _json(
            SimilarItems(
                item_id=item_id,
                user_id=user_id,
                personalised=bool(rows and rows[0]["personalised"]),
                source=rows[0]["source"] if rows else None,
                items=[
                    SimilarItem(
                        item_id=r["item_id"],
                        rank=r["rank"],
                        score=r["final_score"],
                        source_score=r["score"],
                        source=r["source"],
                    )
                    for r in rows
                ],
            )
        )

    @app.get("/health", response_model=Health, responses={503: ERRORS[503]})
    def health() -> Response:
        """The publication being served and the row count of every serving table."""
        cur, _, pseudonymized, _ = session(None)
        try:
            info = serving.publication_info(cur)
        finally:
            cur.close()
        return _json(
            Health(
                status="ok",
                model_version=info.get("model_version"),
                generated_at=info.get("generated_at"),
                as_of=info.get("as_of"),
                n_users=info.get("n_users"),
                n_rows=info.get("n_rows"),
                row_counts=info["row_counts"],
                pseudonymized=pseudonymized,
                opened_at=reader.opened_at,
                reloads=reader.reloads,
                exposures=None if exposures is None else ExposureCounts(**exposures.counts()),
            )
        )

    return app


def openapi_json() -> str:
    """The service's OpenAPI schema as docs/openapi.json holds it (``make openapi``)."""
    return json.dumps(create_app(Path("unused.duckdb")).openapi(), indent=2) + "\n"


def serve(
    serving_db: Path,
    host: str,
    port: int,
    *,
    log_level: str | None,
    home: Path | None = None,
    docs: bool = False,
    default_n: int = default("top_n"),
    exposure_dir: Path | None = None,
    control_share: float = default("control_share"),
    control_salt: str = default("control_salt"),
) -> None:
    """Run the service with uvicorn (blocking); ``home``'s pseudonym key, if it has one, maps
    user ids when the file holds pseudonyms. ``log_level`` None: uvicorn's own.
    ``exposure_dir``: where the exposure log is written; None: no log. ``control_share``,
    ``control_salt``: the control group (``create_app``)."""
    import uvicorn

    key = privacy.load_key(home) if home is not None else None
    where = str(privacy.key_path(home)) if home is not None else "no home given"
    exposures = ExposureLog(exposure_dir) if exposure_dir is not None else None
    app = create_app(
        serving_db,
        pseudonym_key=key,
        key_source=where,
        docs=docs,
        default_n=default_n,
        exposures=exposures,
        control_share=control_share,
        control_salt=control_salt,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)

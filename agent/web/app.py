"""`interp serve`: the catalog as web pages and a JSON API behind them (FastAPI, Jinja2 templates rendered on
the server, no JavaScript build, nothing fetched from the internet).

Every catalog string is data: templates autoescape, tokens are shaded with classes (never inline styles or
scripts), and a Content-Security-Policy forbids inline scripts and remote loads. The catalog is opened
read-only for each request, so a labeling run can write between requests and a reload shows its new rows.
An unknown feature set or feature is a 404 page (JSON under /api), never a traceback.
"""

import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from agent.labeling.config import LabelConfig
from agent.web import graph_pages, pages
from agent.web.ask import MAX_QUESTION_CHARS, ask_events, earlier_sessions
from agent.web.queries import FeatureFilter
from tools.catalog import Catalog
from tools.errors import InterpError
from tools.text import visible, visible_lines

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
TOKEN_COOKIE = "interp_token"
CATALOG_WAIT_SECONDS = 10.0


class NotFound(Exception):
    pass


class GraphGroup(BaseModel, extra="forbid"):
    name: str = Field(min_length=1, max_length=80)
    nodes: list[int] = Field(max_length=1000)


class GroupRename(BaseModel, extra="forbid"):
    name: str = Field(min_length=1, max_length=80)
    new_name: str = Field(min_length=1, max_length=80)


class GraphPins(BaseModel, extra="forbid"):
    nodes: list[int] = Field(max_length=1000)


class HumanLabel(BaseModel, extra="forbid"):
    text: str = Field(min_length=1, max_length=500)


def same_site(request: Request) -> None:
    """The pages' writes (a group, pins, a person's label) are refused unless they are JSON from a page of this
    server: another site's form cannot send JSON, and a script from another origin carries its Origin."""
    origin = request.headers.get("origin")
    if not request.headers.get("content-type", "").startswith("application/json") or \
            (origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"):
        raise InterpError("writes are accepted only as JSON from this server's own pages")


def create_app(catalog_path: Path, token: str | None = None, config: LabelConfig | None = None,
               ask_graph: str = "auto") -> FastAPI:
    """`config` names the LLM that answers questions (and the device and embedder); `ask_graph` as for
    `interp ask --graph`."""
    config = config or LabelConfig()
    embedder, device = config.embedder, config.device
    from swagger_ui_bundle import swagger_ui_path

    app = FastAPI(title="interp-agent", description="Browse an interp-agent catalog: feature sets, features, "
                  "explanations and scores, search.", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["visible"] = visible  # control characters shown, never emitted raw
    templates.env.filters["lines"] = visible_lines
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.mount("/api/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    state: dict[str, Any] = {"bench_lock": threading.Lock(), "model_lock": threading.Lock(),
                             "ask_lock": threading.Lock()}
    catalog_lock = threading.Lock()
    """One catalog connection at a time in this server: DuckDB refuses a read-only and a read-write connection
    to one file from one process at once, and the graph page reads while it saves pins."""

    @contextmanager
    def opened(read_only: bool) -> Iterator[Catalog]:
        with catalog_lock, Catalog(catalog_path, read_only=read_only, wait_seconds=CATALOG_WAIT_SECONDS) as catalog:
            yield catalog

    def read(view, *args):
        try:
            with opened(read_only=True) as catalog:
                return view(catalog, *args)
        except InterpError as error:
            if str(error).startswith(("no feature set", "no audit run", "no graph")) or \
                    "is not in feature set" in str(error):
                raise NotFound(str(error)) from None
            raise

    def embed_query(text: str) -> tuple[list[float], str]:
        if "embedder" not in state:
            from evals.scorers.embedding import Embedder

            state["embedder"] = Embedder(embedder, device=device)
        model = state["embedder"]
        return model.embed([text])[0].tolist(), model.name

    def workbench(ref: str):
        """The set's workbench, kept for the server's life: its subject model loads on the first model-side
        request and is reused by every later one."""
        from agent.investigate.workbench import Workbench

        set_id = read(lambda catalog: catalog.feature_set(ref)["feature_set_id"])
        with state["bench_lock"]:
            benches = state.setdefault("benches", {})
            if set_id not in benches:
                benches[set_id] = Workbench(catalog_path, set_id, device)
            return benches[set_id]

    def model_side(ref: str, feature: int, text: str) -> dict:
        bench = workbench(ref)
        try:
            with state["model_lock"]:  # one forward pass at a time
                return pages.model_side(bench, feature, text)
        except InterpError as error:
            if "is not in feature set" in str(error):
                raise NotFound(str(error)) from None
            raise

    def page(request: Request, template: str, context: dict, status: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, template, context, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None:
            offered = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or \
                request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return JSONResponse({"error": "this server needs its token (?token=...)"}, status_code=401)
        response: Response = await call_next(request)
        # Swagger UI styles its widgets inline; its page shows no catalog text, and scripts stay 'self' there too.
        response.headers["Content-Security-Policy"] = CSP if request.url.path != "/api/docs" else \
            CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(error)}, status_code=404)
        return page(request, "error.html", {"title": "Not found", "message": str(error)}, 404)

    @app.exception_handler(InterpError)
    async def refused(request: Request, error: InterpError):
        status = 503 if "held by another process" in str(error) else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(error)}, status_code=status)
        return page(request, "error.html", {"title": "Cannot show this", "message": str(error)}, status)

    # JSON API: what each page shows.

    @app.get("/api/sets", tags=["api"], summary="feature sets, with how many features are labeled and by whom")
    def api_sets() -> list[dict]:
        return read(pages.home)["sets"]

    @app.get("/api/runs", tags=["api"], summary="recent runs with their status and LLM tokens")
    def api_runs() -> list[dict]:
        return read(pages.home)["runs"]

    @app.get("/api/sets/{feature_set}", tags=["api"], summary="one page of a set's features, filtered and sorted")
    def api_features(feature_set: str, query: Annotated[FeatureFilter, Query()]) -> dict:
        return read(pages.feature_set, feature_set, query)

    @app.get("/api/sets/{feature_set}/features/{feature}", tags=["api"],
             summary="a feature: stats, histogram, examples, explanations with scores, experiments, neighbours")
    def api_feature(feature_set: str, feature: int) -> dict:
        return read(pages.feature, feature_set, feature)

    @app.get("/api/sets/{feature_set}/features/{feature}/model", tags=["api"],
             summary="needs the subject model: direct logit effect, nearest decoder directions, activations on text")
    def api_model_side(feature_set: str, feature: int,
                       text: Annotated[str, Query(max_length=pages.MAX_TRY_CHARS)] = "") -> dict:
        return model_side(feature_set, feature, text)

    @app.get("/api/audits", tags=["api"], summary="audit runs with their concepts' verdicts")
    def api_audits() -> list[dict]:
        return read(pages.audits)["audits"]

    @app.get("/api/audits/{run_id}", tags=["api"], summary="one audit run: each concept with its candidates")
    def api_audit(run_id: str) -> dict:
        return read(pages.audit, run_id)

    @app.get("/api/evals", tags=["api"], summary="eval tables (planted features, comparisons)")
    def api_evals() -> list[dict]:
        return read(pages.evals)["tables"]

    @app.get("/api/graphs", tags=["api"], summary="attribution graphs, newest first")
    def api_graphs() -> list[dict]:
        return read(graph_pages.graphs)["graphs"]

    @app.get("/api/graphs/{graph_id}", tags=["api"],
             summary="an attribution graph: kept nodes with labels, pruned edges, named groups, pins, scores")
    def api_graph(graph_id: str) -> dict:
        return read(graph_pages.graph, graph_id)

    @app.get("/api/graphs/{graph_id}/nodes/{node}", tags=["api"],
             summary="a node's detail: decoder logits, and for a cached feature its examples, histogram, labels")
    def api_graph_node(graph_id: str, node: int) -> dict:
        return read(graph_pages.graph_node, graph_id, node)

    @app.get("/api/graphs/{graph_id}/scores", tags=["api"],
             summary="replacement and completeness of the subgraph of the pinned nodes (comma-separated)")
    def api_graph_scores(graph_id: str, pinned: Annotated[str, Query(max_length=20_000,
                                                                     pattern=r"^[0-9]*(,[0-9]+)*$")] = "") -> dict:
        return read(graph_pages.graph_scores, graph_id, [int(n) for n in pinned.split(",") if n])

    @app.get("/api/graphs/{graph_id}/suggestions", tags=["api"],
             summary="suggested supernodes: feature nodes with alike edges and labels, for a person to accept")
    def api_graph_suggestions(graph_id: str) -> dict:
        return read(graph_pages.graph_suggestions, graph_id)

    def write(graph_id: str, change) -> dict:
        """One write to the catalog for the graph this id names; returns the graph's groups and pins after it."""
        shown_id = read(lambda catalog: catalog.graph(graph_id)["graph_id"])
        with opened(read_only=False) as catalog:
            change(catalog, shown_id)
            return {"groups": catalog.graph_groups(shown_id), "pinned": catalog.graph_pins(shown_id)}

    @app.post("/api/graphs/{graph_id}/groups", tags=["api"],
              summary="save a named group of nodes (a supernode); the same name replaces it, no nodes deletes it")
    def api_save_group(request: Request, graph_id: str, group: GraphGroup) -> dict:
        same_site(request)
        return write(graph_id, lambda catalog, shown: catalog.save_graph_group(shown, group.name, group.nodes))

    @app.post("/api/graphs/{graph_id}/groups/rename", tags=["api"], summary="rename a group, keeping its members")
    def api_rename_group(request: Request, graph_id: str, rename: GroupRename) -> dict:
        same_site(request)
        return write(graph_id, lambda catalog, shown: catalog.rename_graph_group(shown, rename.name, rename.new_name))

    @app.post("/api/graphs/{graph_id}/pins", tags=["api"],
              summary="save the pinned nodes, which `interp export graph` writes as Neuronpedia's pinnedIds")
    def api_save_pins(request: Request, graph_id: str, pins: GraphPins) -> dict:
        same_site(request)
        return write(graph_id, lambda catalog, shown: catalog.save_graph_pins(shown, pins.nodes))

    @app.post("/api/graphs/{graph_id}/nodes/{node}/label", tags=["api"],
              summary="a person's label of a feature node, saved as an explanation by explainer 'human'")
    def api_label_node(request: Request, graph_id: str, node: int, label: HumanLabel) -> dict:
        same_site(request)
        detail = read(graph_pages.graph_node, graph_id, node)
        if detail["feature_set_id"] is None:
            raise InterpError(f"node {node} is not a feature of a cached layer; only those can be labeled")
        if not label.text.strip():
            raise InterpError("the label is blank; write what the feature stands for")
        from tools.passes.cache import package_versions

        settings = {"feature_set": detail["feature_set_id"], "feature": detail["feature"], "graph": graph_id,
                    "node": node}
        with opened(read_only=False) as catalog:
            catalog.record_human_label(detail["feature_set_id"], detail["feature"], label.text.strip(), settings,
                                       package_versions())
        return read(graph_pages.graph_node, graph_id, node)

    @app.get("/api/search", tags=["api"], summary="features whose explanation best matches a description")
    def api_search(q: Annotated[str, Query(min_length=1, max_length=200)], n: Annotated[int, Query(ge=1, le=100)] = 20,
                   feature_set: str | None = None) -> list[dict]:
        vector, name = embed_query(q)
        return read(pages.search, vector, name, n, feature_set)

    # Pages.

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request):
        """FastAPI's OpenAPI page, served from the swagger-ui-bundle package instead of a CDN."""
        return page(request, "docs.html", {})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request):
        return page(request, "home.html", read(pages.home))

    @app.get("/sets/{feature_set}", response_class=HTMLResponse, include_in_schema=False)
    def feature_set(request: Request, feature_set: str, query: Annotated[FeatureFilter, Query()]):
        return page(request, "feature_set.html", read(pages.feature_set, feature_set, query) | {
            "query": query, "query_string": pages.query_string})

    @app.get("/sets/{feature_set}/features/{feature}", response_class=HTMLResponse, include_in_schema=False)
    def feature(request: Request, feature_set: str, feature: int, session: str | None = None):
        shown = read(pages.feature, feature_set, feature)
        return page(request, "feature.html", shown | {
            "sessions": earlier_sessions(catalog_path, shown["set"]["feature_set_id"], feature),
            "session": session or "", "llm": config.llm})

    @app.get("/sets/{feature_set}/features/{feature}/model", response_class=HTMLResponse, include_in_schema=False)
    def try_it(request: Request, feature_set: str, feature: int,
               text: Annotated[str, Query(max_length=pages.MAX_TRY_CHARS)] = ""):
        set_id = read(lambda catalog: catalog.feature_set(feature_set)["feature_set_id"])
        return page(request, "model_side.html", model_side(feature_set, feature, text) | {"set_id": set_id})

    @app.get("/graphs", response_class=HTMLResponse, include_in_schema=False)
    def graphs(request: Request):
        return page(request, "graphs.html", read(graph_pages.graphs))

    @app.get("/graphs/{graph_id}", response_class=HTMLResponse, include_in_schema=False)
    def graph(request: Request, graph_id: str):
        return page(request, "graph.html", read(graph_pages.graph, graph_id))

    @app.get("/audits", response_class=HTMLResponse, include_in_schema=False)
    def audits(request: Request):
        return page(request, "audits.html", read(pages.audits))

    @app.get("/audits/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def audit(request: Request, run_id: str):
        return page(request, "audit.html", read(pages.audit, run_id))

    @app.get("/evals", response_class=HTMLResponse, include_in_schema=False)
    def evals(request: Request):
        return page(request, "evals.html", read(pages.evals))

    @app.get("/sets/{feature_set}/features/{feature}/ask/stream", include_in_schema=False)
    async def ask_stream(feature_set: str, feature: int,
                         q: Annotated[str, Query(min_length=1, max_length=MAX_QUESTION_CHARS)],
                         session: Annotated[str | None, Query(max_length=64)] = None):
        """Server-sent events: session, tool, result, answer or failure, then done."""
        lock = state["ask_lock"]
        return StreamingResponse(ask_events(config, catalog_path, feature_set, feature, q, session or None,
                                            ask_graph, lock), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def search(request: Request, q: Annotated[str, Query(max_length=200)] = "", feature_set: str | None = None):
        results = []
        if q.strip():
            vector, name = embed_query(q)
            results = read(pages.search, vector, name, 30, feature_set or None)
        return page(request, "search.html", {"q": q, "results": results, "feature_set": feature_set or ""})

    return app

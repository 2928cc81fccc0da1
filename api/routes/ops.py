"""Operations endpoints: liveness, readiness and metrics, without authentication."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.errors import error_response
from api.exposition import exposition
from api.openapi import errors
from api.services import Services

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about the database."""
    return {"status": "ok"}


@router.get("/readyz", responses=errors({503: ["SERVICE_UNAVAILABLE"]}))
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 `{"status": "ready"}` when the database answers and the writer runs; else 503
    SERVICE_UNAVAILABLE (with Retry-After) and `details.reason` (`database_unavailable`,
    `writer_stopped`). Answers within a few seconds."""
    services: Services = request.app.state.services
    unready = await run_in_threadpool(services.unready_reason)
    if unready is None:
        return JSONResponse({"status": "ready"})
    reason, message = unready
    return error_response(request, "SERVICE_UNAVAILABLE", message, {"reason": reason})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics(request: Request) -> Response:
    """The service's metrics in Prometheus text format, every name prefixed `coupon_ledger_`: requests
    and latency by route template, redemptions, refusals by error code, the writer's batches, commits,
    conflicts and queue, the projection's lag, holds live, the sweeper's work, webhook deliveries.
    Summed over every process of the server. No label carries a retailer, code, customer or key."""
    services: Services = request.app.state.services
    observer = getattr(request.app.state, "request_observer", None)
    if observer is not None:  # this process's request counts tallied since its last flush
        observer.flush()
    body, content_type = await run_in_threadpool(exposition, services.pool, services.ledger)
    return Response(body, media_type=content_type)

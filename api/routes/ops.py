"""Operations endpoints: liveness and readiness, without authentication."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.errors import error_response
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

"""/dashboard: the page shells (Jinja2 templates) and their static files, with the security headers
every dashboard response carries.

The pages carry no data: a browser navigation sends no bearer header, so each page is a shell whose
script signs in with the secret key (kept in the tab's sessionStorage) and calls the API itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.webhooks.events import EVENT_KINDS

HERE = Path(__file__).resolve().parent
PREFIX = "/dashboard"

# No inline script or style, nothing from another origin, no framing: what the pages' scripts
# render from API data is text (textContent), and a script injected anyway could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix=PREFIX, include_in_schema=False)

# (template, title, the page's script) by page; the nav lists the first three.
PAGES = {
    "coupons": ("coupons.html", "Coupons", "coupons.js"),
    "campaigns": ("campaigns.html", "Campaigns", "campaigns.js"),
    "webhooks": ("webhooks.html", "Webhooks", "webhooks.js"),
    "coupon": ("coupon.html", "Coupon", "coupon.js"),
}


def _page(request: Request, page: str) -> HTMLResponse:
    template, title, script = PAGES[page]
    context = {"page": page, "title": title, "script": script, "prefix": PREFIX, "event_kinds": sorted(EVENT_KINDS)}
    return templates.TemplateResponse(request, template, context, headers={"Cache-Control": "no-store"})


@router.get("", response_class=HTMLResponse)
def coupons_page(request: Request) -> HTMLResponse:
    """The coupons: list, filters, sorting, paging and the create form."""
    return _page(request, "coupons")


@router.get("/coupons/{code}", response_class=HTMLResponse)
def coupon_page(request: Request, code: str) -> HTMLResponse:
    """One coupon: state, actions, timeline with its hash chain checked in the browser, daily chart.
    The code is read by the page's script from the address, not rendered here."""
    return _page(request, "coupon")


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request) -> HTMLResponse:
    """Campaigns: list with results against budget, CSV export, the generate form."""
    return _page(request, "campaigns")


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request) -> HTMLResponse:
    """Webhook endpoints (create, delete) and deliveries (resend)."""
    return _page(request, "webhooks")


class DashboardHeaders:
    """Adds the security headers to every response under /dashboard (pages, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard on the app: its pages, its static files and its headers."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.add_middleware(DashboardHeaders)

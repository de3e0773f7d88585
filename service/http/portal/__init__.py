"""The customer portal: server-rendered pages under /portal for one account's webhooks,
deliveries and events, opened by a portal link (docs/portal.md).

    links.py            POST /api/accounts/{id}/portal-links (the API side)
    session.py          login by link, the session cookie, CSRF, `portal_page`
    webhook_pages.py    webhooks: list, create, edit, enable/disable, test, recover, one
    delivery_pages.py   one delivery's attempts and retry; events and their deliveries
    chart.py            the 24-hour chart's geometry
    render.py           templates and the security headers of every /portal response
"""

from __future__ import annotations

from importlib.resources import files

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.http.portal import delivery_pages, links, session, webhook_pages
from service.http.portal.render import SecurityHeaders, message

ONE = "/webhooks/{webhook_id:int}"
DELIVERY = ONE + "/deliveries/{delivery_id}"


async def not_found(request: Request) -> Response:
    return message(request, 404, "Not found", "There is no such page in the portal.")


mount = Mount(
    "/portal",
    name="portal",
    middleware=[Middleware(SecurityHeaders)],
    routes=[
        Route("/login", session.login, methods=["GET"], name="login"),
        Route("/logout", session.logout, methods=["POST"], name="logout"),
        Route("/", webhook_pages.home, methods=["GET"], name="home"),
        Route("/webhooks/new", webhook_pages.new_webhook, methods=["GET"], name="new_webhook"),
        Route("/webhooks", webhook_pages.create_webhook, methods=["POST"], name="webhooks"),
        Route(ONE, webhook_pages.webhook_page, methods=["GET"], name="webhook"),
        Route(ONE, webhook_pages.update_webhook, methods=["POST"], name="update_webhook"),
        Route(ONE + "/edit", webhook_pages.edit_webhook, methods=["GET"], name="edit_webhook"),
        Route(ONE + "/active", webhook_pages.set_active, methods=["POST"], name="set_active"),
        Route(ONE + "/test", webhook_pages.send_test, methods=["POST"], name="send_test"),
        Route(ONE + "/recover", webhook_pages.recover, methods=["POST"], name="recover"),
        Route(
            ONE + "/secret/rotate",
            webhook_pages.rotate_secret,
            methods=["POST"],
            name="rotate_secret",
        ),
        Route(DELIVERY, delivery_pages.delivery_page, methods=["GET"], name="delivery"),
        Route(DELIVERY + "/retry", delivery_pages.retry, methods=["POST"], name="retry"),
        Route("/events", delivery_pages.events_page, methods=["GET"], name="events"),
        Mount(
            "/static",
            StaticFiles(directory=str(files("service.http.portal") / "static")),
            name="static",
        ),
        Route("/{path:path}", not_found, methods=["GET", "POST"]),
    ],
)

routes = [*links.routes, mount]

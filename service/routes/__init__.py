"""One APIRouter per resource; :data:`ROUTERS` is what the app includes (a new resource: its
module here and one entry below)."""

from fastapi import APIRouter

from service.routes import gallery, health, inference, model, page

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    model.router,
    inference.router,
    gallery.router,
    page.router,
)

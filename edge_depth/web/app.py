"""The console's FastAPI application: pages, JSON API, MJPEG streams, metrics and health.

Every page and asset comes from this package (``static/``) or, for ``/docs``, from the ``swagger-ui-bundle``
package: nothing is loaded from another site. Routes read the daemon only through
:class:`~edge_depth.web.source.ConsoleSource`; nothing here holds the Service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from edge_depth import __version__
from edge_depth.config.alerts import ZoneConfig
from edge_depth.config.schema import CameraConfig, Config
from edge_depth.config.web import WebConfig
from edge_depth.outputs.heatmap import encode_jpeg
from edge_depth.redact import redact_url
from edge_depth.web.auth import COOKIE, Guard, safe_next
from edge_depth.web.configcheck import Drawing, Section, alerts_yaml, check_text
from edge_depth.web.photos import PhotoDepth, PhotoError, PhotoResult
from edge_depth.web.source import ConsoleSource

log = logging.getLogger(__name__)

STATIC = Path(str(files("edge_depth.web") / "static"))
_BOUNDARY = "edge-depth-frame"
_STREAM_IDLE_S = 1.0  # a stream re-checks for shutdown this often while no heatmap comes
_ACK_TIMEOUT_S = 3.0
_READY_FRESH_S = 10.0  # a camera is delivering when it processed a frame within this long
_MAX_CONFIG_BYTES = 1_000_000
_DRAIN_MAX_BYTES = 64_000_000  # a too-large upload up to this size is read to its end before the 413
_EXTENSIONS: dict[str, Literal["jpeg", "png16", "npy"]] = {"jpg": "jpeg", "png": "png16", "npy": "npy"}


def create_app(  # noqa: PLR0915 -- the routes are short closures over one console's state
    source: ConsoleSource,
    cfg: WebConfig,
    *,
    registry: CollectorRegistry,
    photos: PhotoDepth,
    stopping: threading.Event,
) -> FastAPI:
    """The console for ``source``. ``stopping`` ends open MJPEG streams (set by the server's shutdown)."""
    guard = Guard(None if cfg.token is None else cfg.token.get_secret_value())
    # Swagger UI 4 (the version the swagger-ui-bundle package ships) reads OpenAPI 3.0 documents; FastAPI's own
    # output is 3.1-compatible JSON Schema that it renders fine once labelled 3.0.
    app = FastAPI(
        title="edge-depth console",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="The daemon's state, heatmaps, alert commands, photo depth and config checks.",
    )
    app.openapi_version = "3.0.3"
    app.mount("/static/swagger", StaticFiles(directory=swagger_assets()), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    started = time.monotonic()

    @app.middleware("http")
    async def protect(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        verdict = guard.check(request.method, request.url.path, headers)
        if verdict.status == 0:
            response = await call_next(request)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
            return response
        wants_page = request.method == "GET" and "text/html" in headers.get("accept", "")
        if verdict.status == HTTPStatus.UNAUTHORIZED and wants_page:
            target = quote(safe_next(request.url.path), safe="/")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        extra = {"WWW-Authenticate": "Bearer"} if verdict.status == HTTPStatus.UNAUTHORIZED else {}
        return JSONResponse({"detail": verdict.reason}, status_code=verdict.status, headers=extra)

    def camera(name: str) -> CameraConfig:
        found = next((cam for cam in source.cameras() if cam.name == name), None)
        if found is None:
            raise HTTPException(404, f"no camera named {name!r}")
        return found

    # -- pages ----------------------------------------------------------------------------------------

    def page(name: str) -> HTMLResponse:
        return HTMLResponse((STATIC / name).read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return page("dashboard.html")

    @app.get("/editor", include_in_schema=False)
    def editor() -> HTMLResponse:
        return page("editor.html")

    @app.get("/photo", include_in_schema=False)
    def photo_page() -> HTMLResponse:
        return page("photo.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/login", include_in_schema=False)
    def login_page() -> HTMLResponse:
        return page("login.html")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        if not guard.enabled:
            return RedirectResponse(target, status_code=303)
        if not guard.token_ok(token):
            log.warning("console: failed login from %s", request.client.host if request.client else "?")
            return RedirectResponse(f"/login?failed=1&next={quote(target, safe='/')}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, guard.session_value, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="edge-depth console API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    # -- health ---------------------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="The console answers (the process is alive)")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.monotonic() - started, 1)}

    @app.get("/readyz", tags=["health"], summary="Model compiled, MQTT connected, every camera delivering")
    def readyz() -> JSONResponse:
        engine = source.engine()
        mqtt = source.mqtt()
        cameras = {}
        for cam in source.cameras():
            state = source.capture_state(cam.name)
            frame_age = _frame_age(source, cam.name)
            cameras[cam.name] = bool(
                state is not None and state.state == "online" and frame_age is not None and frame_age < _READY_FRESH_S
            )
        checks = {
            "model_compiled": engine.compiled,
            "mqtt_connected": mqtt is not None and mqtt.connected,
            "cameras_delivering": all(cameras.values()) and bool(cameras),
        }
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks, "cameras": cameras}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # -- state ----------------------------------------------------------------------------------------

    @app.get("/api/status", tags=["state"], summary="Daemon, model, MQTT and every camera's status")
    def status() -> dict[str, Any]:
        stats = source.stats()
        return _clean_dict(
            {
                **stats,
                "model": asdict(source.engine()),
                "cameras": {cam.name: source.camera_status(cam.name) for cam in source.cameras()},
                "web": {"auth": guard.enabled, "show_camera_image": cfg.show_camera_image},
            }
        )

    @app.get("/api/cameras", tags=["state"], summary="Every camera: status, zones with live occupancy")
    def cameras() -> list[dict[str, Any]]:
        return [_camera_json(source, cam, cfg) for cam in source.cameras()]

    @app.get("/api/cameras/{name}", tags=["state"], summary="One camera, with its alerts config")
    def camera_detail(name: str) -> dict[str, Any]:
        cam = camera(name)
        return {**_camera_json(source, cam, cfg), "alerts": cam.alerts.model_dump(mode="json")}

    @app.get(
        "/api/cameras/{name}/latest.jpg",
        tags=["images"],
        summary="The latest heatmap JPEG the camera published",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no heatmap yet, or heatmaps off"}},
    )
    def latest(name: str) -> Response:
        cam = camera(name)
        heatmap = source.heatmaps(name).latest()
        if heatmap is None:
            off = cam.heatmap.rate_hz == 0
            raise HTTPException(404, "heatmaps are off (heatmap.rate_hz: 0)" if off else "no heatmap yet")
        headers = {"Cache-Control": "no-store", "X-Heatmap-Seq": str(heatmap.seq)}
        return Response(heatmap.jpeg, media_type="image/jpeg", headers=headers)

    @app.get(
        "/api/cameras/{name}/image.jpg",
        tags=["images"],
        summary="The camera's own latest picture (only with web.show_camera_image)",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 403: {"description": "web.show_camera_image is off"}},
    )
    def camera_picture(name: str) -> Response:
        camera(name)
        if not cfg.show_camera_image:
            raise HTTPException(403, "the camera's picture is not shown (web.show_camera_image: false)")
        image = source.camera_image(name)
        if image is None:
            raise HTTPException(404, "no frame yet")
        return Response(encode_jpeg(image, 80), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get(
        "/api/cameras/{name}/stream.mjpeg",
        tags=["images"],
        summary="Live heatmaps as MJPEG, at most at the camera's heatmap rate",
        response_class=StreamingResponse,
        responses={200: {"content": {f"multipart/x-mixed-replace; boundary={_BOUNDARY}": {}}}},
    )
    def stream(name: str) -> StreamingResponse:
        camera(name)
        feed = source.heatmaps(name)
        if not feed.try_join(cfg.max_stream_clients):
            raise HTTPException(503, f"{cfg.max_stream_clients} viewers already watch this camera")

        async def frames() -> AsyncIterator[bytes]:
            try:
                latest = feed.latest()
                seq = 0
                if latest is not None:
                    seq = latest.seq
                    yield _part(latest.jpeg)
                while not stopping.is_set():
                    heatmap = await feed.after(seq, _STREAM_IDLE_S)
                    if heatmap is not None:
                        seq = heatmap.seq
                        yield _part(heatmap.jpeg)
            finally:
                feed.leave()

        return StreamingResponse(
            frames(),
            media_type=f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/api/cameras/{name}/probe", tags=["editor"], summary="A polygon's live occupancy and nearest value")
    def probe(
        name: str,
        polygon: Annotated[str, Query(description="Corners 'x,y;x,y;x,y' (normalised, at least 3)")],
        enter: Annotated[float | None, Query(description="Zone threshold (unit of the reference mode)")] = None,
    ) -> dict[str, Any]:
        camera(name)
        corners = _parse_polygon(polygon)
        try:
            ZoneConfig(name="probe", polygon=corners, enter=enter)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise HTTPException(422, f"polygon: {first['msg']}") from None
        result = source.probe(name, corners, enter)
        if result is None:
            return {"ready": False, "reason": "the depth reference has not measured a frame yet (baseline learning?)"}
        return {"ready": True, **asdict(result)}

    @app.post("/api/cameras/{name}/alerts.yaml", tags=["editor"], summary="The camera's alerts block for a drawing")
    def drawing_yaml(name: str, drawing: Drawing) -> dict[str, Any]:
        cam = camera(name)
        text = alerts_yaml(cam.alerts, drawing)
        errors = check_text(text, "alerts", f"{name}.alerts.yaml")
        return {"yaml": text, "errors": errors, "ok": not errors}

    @app.get("/api/events", tags=["alerts"], summary="Recent alert events and the alerts still open")
    def events(limit: Annotated[int, Query(ge=1, le=100_000)] = 100) -> dict[str, Any]:
        return {"events": source.events()[-limit:], "open": source.open_alerts()}

    # -- commands -------------------------------------------------------------------------------------

    @app.post("/api/alerts/{event_id}/ack", tags=["alerts"], summary="Acknowledge an open alert")
    def ack(event_id: str) -> dict[str, Any]:
        answer = source.acknowledge(event_id, _ACK_TIMEOUT_S)
        if answer is None:
            raise HTTPException(404, f"no open alert {event_id!r}")
        if not answer:
            raise HTTPException(409, f"alert {event_id!r} is not open any more")
        log.info("console: alert %s acknowledged", event_id)
        return {"acknowledged": True, "id": event_id}

    @app.post("/api/cameras/{name}/baseline/reset", tags=["alerts"], summary="Relearn the empty scene", status_code=202)
    def baseline_reset(name: str) -> dict[str, Any]:
        cam = camera(name)
        if cam.alerts.reference.mode != "baseline":
            raise HTTPException(409, f"camera {name!r} uses reference mode {cam.alerts.reference.mode!r}, not baseline")
        log.info("console: camera %s: relearning the empty scene", name)
        source.reset_baseline(name)
        return {"accepted": True, "camera": name}

    # -- photos ---------------------------------------------------------------------------------------

    @app.post(
        "/api/predict",
        tags=["photos"],
        summary="Depth of a photo: send the image as the request body",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}, "image/png": {}, "application/octet-stream": {}}},
            413: {"description": "too large"},
            415: {"description": "not an image"},
            422: {"description": "broken image"},
            503: {"description": "busy"},
        },
    )
    async def predict(
        request: Request,
        format: Annotated[
            Literal["jpeg", "png16", "npy", "json"],
            Query(description="jpeg: heatmap; png16: 16-bit depth PNG; npy: float32 depth; json: links"),
        ] = "jpeg",
    ) -> Response:
        data = await _read_capped(request, photos.max_bytes)
        try:
            future, hit = photos.submit(data)
            result = await asyncio.wrap_future(future)
        except PhotoError as exc:
            headers = {"Retry-After": "2"} if exc.status == HTTPStatus.SERVICE_UNAVAILABLE else {}
            return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
        return _photo_response(result, format, hit)

    @app.get(
        "/api/predict/{key}.{ext}",
        tags=["photos"],
        summary="A cached photo result: jpg (heatmap), png (16-bit depth) or npy",
        response_class=Response,
    )
    def predict_cached(key: str, ext: Literal["jpg", "png", "npy"]) -> Response:
        result = photos.cached(key)
        if result is None:
            raise HTTPException(404, "not in the cache any more: upload the photo again")
        return _photo_response(result, _EXTENSIONS[ext], True, download=True)

    # -- configuration --------------------------------------------------------------------------------

    @app.get("/api/config/schema.json", tags=["config"], summary="JSON Schema of the config file")
    def schema() -> dict[str, Any]:
        return Config.model_json_schema()

    @app.post("/api/config/check", tags=["config"], summary="Check YAML against the schema: errors with key and line")
    async def check(
        request: Request,
        section: Annotated[Section, Query(description="config: a whole file; alerts: one camera's alerts block")] = (
            "config"
        ),
    ) -> dict[str, Any]:
        raw = await _read_capped(request, _MAX_CONFIG_BYTES)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return {"ok": False, "errors": ["upload.yaml:1: not UTF-8 text"]}
        errors = check_text(text, section, "upload.yaml" if section == "config" else "alerts.yaml")
        return {"ok": not errors, "errors": errors}

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes each bad input, which may not even be JSON (a NaN or an infinity in a
        # drawing made its encoder fail): where and why is what a client needs.
        problems = [{"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])} for e in exc.errors()]
        return JSONResponse({"detail": problems}, HTTPStatus.UNPROCESSABLE_ENTITY)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("console: %s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the daemon's log"}, 500)

    return app


def swagger_assets() -> Path:
    """The Swagger UI files of the ``swagger-ui-bundle`` package (found without importing its untyped module)."""
    vendor = Path(str(files("swagger_ui_bundle") / "vendor"))
    found = sorted(vendor.glob("swagger-ui-*"))
    if not found:
        raise FileNotFoundError(f"{vendor}: no swagger-ui-* directory (is swagger-ui-bundle installed?)")
    return found[-1]


def _part(jpeg: bytes) -> bytes:
    head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
    return head + jpeg + b"\r\n"


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (nothing past the limit is kept).

    The rest of a too-large body is read and dropped, up to ``_DRAIN_MAX_BYTES``: a simple client (curl, urllib)
    sends its whole body before it reads the answer, and would see a broken pipe instead of the 413.
    """
    declared = request.headers.get("content-length")
    too_large: str | None = None
    if declared is not None and declared.isdigit() and int(declared) > limit:
        too_large = f"the upload is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:g} MB"
        if int(declared) > _DRAIN_MAX_BYTES:
            raise HTTPException(413, too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = too_large or f"the upload is larger than the limit of {limit / 1e6:g} MB"
            if size > _DRAIN_MAX_BYTES:
                break
            continue
        chunks.append(chunk)
    if too_large is not None:
        raise HTTPException(413, too_large)
    return b"".join(chunks)


def _photo_response(
    result: PhotoResult, fmt: Literal["jpeg", "png16", "npy", "json"], hit: bool, *, download: bool = False
) -> Response:
    headers = {"X-Edge-Depth-Cache": "hit" if hit else "miss", "X-Edge-Depth-Key": result.key}
    if fmt == "json":
        base = f"/api/predict/{result.key}"
        return JSONResponse(
            {
                "key": result.key,
                "cached": hit,
                "format": result.format,
                "size": list(result.size),
                "infer_size": list(result.infer_size),
                "infer_ms": None if hit else round(result.infer_ms, 1),
                "heatmap": f"{base}.jpg",
                "depth_png16": f"{base}.png",
                "depth_npy": f"{base}.npy",
            },
            headers=headers,
        )
    body, media, suffix = {
        "jpeg": (result.heatmap_jpeg, "image/jpeg", "heatmap.jpg"),
        "png16": (result.depth_png16, "image/png", "depth16.png"),
        "npy": (result.depth_npy, "application/octet-stream", "depth.npy"),
    }[fmt]
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{result.key[:12]}-{suffix}"'
    return Response(body, media_type=media, headers=headers)


def _parse_polygon(text: str) -> list[tuple[float, float]]:
    try:
        corners = [(float(x), float(y)) for x, y in (pair.split(",") for pair in text.split(";") if pair.strip())]
    except ValueError:
        raise HTTPException(422, "polygon: write corners as 'x,y;x,y;x,y'") from None
    return corners


def _frame_age(source: ConsoleSource, name: str) -> float | None:
    heat = source.heatmaps(name).latest()
    status = source.camera_status(name)
    if float(status.get("fps") or 0.0) > 0:
        return 0.0
    return None if heat is None else time.time() - heat.at


def _camera_json(source: ConsoleSource, cam: CameraConfig, cfg: WebConfig) -> dict[str, Any]:
    name = cam.name
    states = source.zone_states(name)
    zones = []
    for zone in cam.alerts.zones:
        probed = source.probe(name, zone.polygon, zone.enter)
        fraction = None if probed is None else probed.occupied_fraction
        zones.append(
            {
                "name": zone.name,
                "polygon": [list(p) for p in zone.polygon],
                "on": states.get(zone.name, False),
                "occupied_fraction": None if fraction is None else round(fraction, 4),
                "occupied": fraction is not None and fraction >= zone.min_area,
                "min_area": zone.min_area,
                "nearest": None if probed is None or probed.nearest is None else round(probed.nearest, 3),
            }
        )
    heat = source.heatmaps(name).latest()
    reference = cam.alerts.reference
    return _clean_dict(
        {
            "name": name,
            "status": source.camera_status(name),
            "heatmap": {
                "rate_hz": cam.heatmap.rate_hz,
                "seq": None if heat is None else heat.seq,
                "latest": f"/api/cameras/{name}/latest.jpg",
                "stream": f"/api/cameras/{name}/stream.mjpeg",
            },
            "camera_image": f"/api/cameras/{name}/image.jpg" if cfg.show_camera_image else None,
            "reference": {
                "mode": reference.mode,
                "points": [p.model_dump(mode="json") for p in reference.metric.points],
            },
            "zones": zones,
            "exclusions": [{"name": e.name, "polygon": [list(p) for p in e.polygon]} for e in cam.alerts.exclusions],
            "fall": {"enabled": cam.alerts.fall.enabled, "on": states.get("fall", False)},
        }
    )


def _clean_dict(value: dict[str, Any]) -> dict[str, Any]:
    return {k: _clean(v) for k, v in value.items()}


def _clean(value: Any) -> Any:
    """``value`` with every string redacted: camera URLs' passwords never leave the daemon."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value

"""A NetBox 4.x simulator: the part of the REST API that ``remotehands.network.netbox`` uses, served over
the data in ``remotehands.lab.netbox_sim_model``.

It serves ``/api/`` and ``/api/status/``, sites and tenants (``slug`` filter), prefixes in the 4.2+ shape
(``scope_type``/``scope_id``/``scope``; filters ``site``, ``site_id``, ``status``, ``family``, ``role``,
``prefix``, ``contains``, ``vrf_id``), a prefix's ``available-ips`` (GET lists free addresses; POST takes a
dict or a list and allocates under one lock: 409 with NetBox's ``detail`` when there is not enough room) and
ip-addresses (GET with ``address``, ``parent``, ``tenant``, ``vrf_id``, ``cf_<name>``; POST; DELETE by id,
or many at once with a body of ``[{"id": n}]`` as NetBox's bulk delete).

What the adapter must cope with is copied from NetBox: pagination (``count``/``next``/``previous``/
``results``, ``limit``/``offset``, 50 a page by default, ``limit=0`` the maximum of 1000); field errors of a
write as a 400; nested objects carry ``id``, ``url``, ``display``, ``name``, ``slug``. The data's own rules
(loose custom-field filters, unique addresses, the global table) are in the model module.
Auth: ``Authorization: Token <key>`` (``Bearer`` for v2 tokens); a wrong token is 403 ``Invalid token``,
none is 403 ``Authentication credentials were not provided.``. Tests seed it through its methods.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from remotehands.lab.netbox_sim_model import (
    IP_STATUSES,
    START,
    IpAddressObject,
    NetBoxData,
    Prefix,
)
from remotehands.lab.ticket_sims.harness import Faults, fault_middleware

__all__ = ["API_VERSION", "IP_STATUSES", "PAGE_DEFAULT", "PAGE_MAX", "START", "NetBoxSim"]

API_VERSION = "4.3"
PAGE_DEFAULT = 50  # NetBox's PAGINATE_COUNT
PAGE_MAX = 1000  # NetBox's MAX_PAGE_SIZE


def _choice(value: str | int, label: str) -> dict[str, Any]:
    return {"value": value, "label": label}


def _envelope(
    base: str, path: str, obj_id: int, display: str, family: int, when: datetime = START
) -> dict[str, Any]:
    """The fields every NetBox object has, in NetBox's order."""
    return {
        "id": obj_id,
        "url": f"{base}/api/{path}/{obj_id}/",
        "display_url": f"{base}/{path}/{obj_id}/",
        "display": display,
        "family": _choice(family, f"IPv{family}"),
        "comments": "",
        "tags": [],
        "custom_fields": {},
        "created": when.isoformat(),
        "last_updated": when.isoformat(),
    }


class NetBoxSim(NetBoxData):
    """In-memory NetBox behind one lock; ``app`` is the ASGI app, ``faults`` arms 429/503 answers."""

    def __init__(
        self,
        *,
        token: str,
        ip_custom_fields: tuple[str, ...] = ("remotehands_key",),
        page_size: int = PAGE_DEFAULT,
        enforce_unique: bool = True,
    ) -> None:
        super().__init__(ip_custom_fields=ip_custom_fields, enforce_unique=enforce_unique)
        self.token = token
        self.page_size = page_size
        self.faults = Faults()
        self.posts_to_available_ips = 0
        self.app = self._build_app()

    # -- NetBox's JSON -------------------------------------------------------------------------------

    def _nested(self, kind: str, obj: dict[str, Any], base: str) -> dict[str, Any]:
        return {**obj, "url": f"{base}/api/{kind}/{obj['id']}/", "display": obj["name"], "description": ""}

    def _prefix_json(self, p: Prefix, base: str) -> dict[str, Any]:
        role = None
        if p.role:  # NetBox's role is an object of its own; the simulator names it by its slug
            role = {"id": sum(p.role.encode()), "url": f"{base}/api/ipam/roles/", "display": p.role}
            role |= {"name": p.role, "slug": p.role, "description": ""}
        site = self._nested("dcim/sites", self._s.sites[p.site_id], base)
        flags = {"is_pool": p.is_pool, "mark_utilized": p.mark_utilized, "children": 0, "_depth": 0}
        return (
            _envelope(base, "ipam/prefixes", p.id, str(p.prefix), p.prefix.version)
            | {"prefix": str(p.prefix), "scope_type": "dcim.site", "scope_id": p.site_id, "scope": site}
            | dict.fromkeys(("vrf", "tenant", "vlan"), None)
            | {"status": _choice(p.status, p.status.title()), "role": role, "description": p.description}
            | flags
        )

    def _ip_json(self, ip: IpAddressObject, base: str) -> dict[str, Any]:
        tenant = self._s.tenants.get(ip.tenant_id or 0)
        nulls = ("vrf", "role", "assigned_object_type", "assigned_object_id", "assigned_object", "nat_inside")
        custom = {name: ip.custom_fields.get(name) for name in self.ip_custom_fields}
        return (
            _envelope(base, "ipam/ip-addresses", ip.id, str(ip.address), ip.address.version, ip.created)
            | {"address": str(ip.address), "status": _choice(ip.status, ip.status.title())}
            | dict.fromkeys(nulls, None)
            | {"tenant": self._nested("tenancy/tenants", tenant, base) if tenant else None}
            | {"nat_outside": [], "dns_name": "", "description": ip.description, "custom_fields": custom}
        )

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", self.page_size))
            offset = max(0, int(q.get("offset", "0")))
        except ValueError:
            return JSONResponse({"detail": "Invalid page."}, status_code=400)
        limit = PAGE_MAX if limit <= 0 or limit > PAGE_MAX else limit
        url = request.url
        more = offset + limit < len(items)
        return JSONResponse(
            {
                "count": len(items),
                "next": str(url.include_query_params(limit=limit, offset=offset + limit)) if more else None,
                "previous": str(url.include_query_params(limit=limit, offset=max(0, offset - limit)))
                if offset
                else None,
                "results": items[offset : offset + limit],
            }
        )

    def _authorized(self, request: Request) -> str | None:
        """None when the token is right, else NetBox's 403 detail."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not key:
            return "Authentication credentials were not provided."
        return None if secrets.compare_digest(key.strip(), self.token) else "Invalid token"

    # -- HTTP ----------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="NetBox simulator")

        async def auth(request: Request, call_next: Any) -> Response:
            refusal = self._authorized(request) if request.url.path.startswith("/api/") else None
            response: Response = (
                JSONResponse({"detail": refusal}, status_code=403) if refusal else await call_next(request)
            )
            response.headers["API-Version"] = API_VERSION
            return response

        app.middleware("http")(auth)
        app.middleware("http")(fault_middleware(self.faults))  # outermost: faults before auth

        def not_found() -> Response:
            return JSONResponse({"detail": "Not found."}, status_code=404)

        def base(request: Request) -> str:
            return str(request.base_url).rstrip("/")

        @app.get("/api/")
        async def root(request: Request) -> Response:
            return JSONResponse(
                {k: f"{base(request)}/api/{k}/" for k in ("dcim", "ipam", "tenancy", "status")}
            )

        @app.get("/api/status/")
        async def status() -> Response:
            return JSONResponse(
                {"netbox-version": f"{API_VERSION}.0", "python-version": "3.12.3", "plugins": {}}
            )

        def named(path: str, table: dict[int, dict[str, Any]]) -> None:
            @app.get(f"/api/{path}/")
            async def listing(request: Request) -> Response:
                with self._lock:
                    slugs = request.query_params.getlist("slug")
                    found = [o for o in table.values() if not slugs or o["slug"] in slugs]
                    return self._page(request, [self._nested(path, o, base(request)) for o in found])

        named("dcim/sites", self._s.sites)
        named("tenancy/tenants", self._s.tenants)

        @app.get("/api/ipam/prefixes/")
        async def prefixes(request: Request) -> Response:
            with self._lock:
                found = self._filter_prefixes(request.query_params)
                return self._page(request, [self._prefix_json(p, base(request)) for p in found])

        @app.get("/api/ipam/prefixes/{prefix_id}/")
        async def prefix(prefix_id: int, request: Request) -> Response:
            with self._lock:
                p = self._s.prefixes.get(prefix_id)
                return JSONResponse(self._prefix_json(p, base(request))) if p else not_found()

        @app.get("/api/ipam/prefixes/{prefix_id}/available-ips/")
        async def list_available(prefix_id: int, request: Request) -> Response:
            limit = int(request.query_params.get("limit", self.page_size)) or PAGE_MAX
            with self._lock:
                p = self._s.prefixes.get(prefix_id)
                if p is None:
                    return not_found()
                free, _ = self._available(p, limit)
                shown = [
                    {"family": a.version, "address": str(a), "vrf": None, "description": ""} for a in free
                ]
                return JSONResponse(shown)

        @app.post("/api/ipam/prefixes/{prefix_id}/available-ips/")
        async def allocate(prefix_id: int, request: Request) -> Response:
            payload = await request.json()
            many = isinstance(payload, list)
            wanted = payload if many else [payload]
            # One lock around find-free-and-create, as NetBox's advisory lock: concurrent posts never collide.
            with self._lock:
                self.posts_to_available_ips += 1
                p = self._s.prefixes.get(prefix_id)
                if p is None:
                    return not_found()
                free, room = self._available(p, len(wanted))
                if room < len(wanted):
                    detail = (
                        f"An insufficient number of IP addresses are available within {p.prefix} "
                        f"({len(wanted)} requested, {room} available)"
                    )
                    return JSONResponse({"detail": detail}, status_code=409)
                checked = [
                    self._validate_ip(item, address) for item, address in zip(wanted, free, strict=False)
                ]
                if any(errors for errors, _ in checked):
                    body: Any = [errors for errors, _ in checked] if many else checked[0][0]
                    return JSONResponse(body, status_code=400)
                created = [self._ip_json(self._save(ip), base(request)) for _, ip in checked if ip]
                return JSONResponse(created if many else created[0], status_code=201)

        @app.get("/api/ipam/ip-addresses/")
        async def list_ips(request: Request) -> Response:
            with self._lock:
                found = self._filter_ips(request.query_params)
                return self._page(request, [self._ip_json(ip, base(request)) for ip in found])

        @app.post("/api/ipam/ip-addresses/")
        async def create_ip(request: Request) -> Response:
            payload = await request.json()
            with self._lock:
                errors, ip = self._validate_ip(payload, None)
                if errors or ip is None:
                    return JSONResponse(errors, status_code=400)
                return JSONResponse(self._ip_json(self._save(ip), base(request)), status_code=201)

        @app.delete("/api/ipam/ip-addresses/{ip_id}/")
        async def delete_ip(ip_id: int) -> Response:
            with self._lock:
                if self._s.ips.pop(ip_id, None) is None:
                    return not_found()
            return Response(status_code=204)

        @app.delete("/api/ipam/ip-addresses/")
        async def bulk_delete(request: Request) -> Response:
            payload = await request.json()
            if not isinstance(payload, list) or not all(isinstance(i, dict) and "id" in i for i in payload):
                return JSONResponse({"detail": 'Expected a list of items but got type "dict".'}, 400)
            with self._lock:  # one transaction in NetBox: the listed objects go together
                for item in payload:
                    self._s.ips.pop(int(item["id"]), None)
            return Response(status_code=204)

        return app

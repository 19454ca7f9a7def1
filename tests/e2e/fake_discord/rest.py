"""The REST entry point: reading and recording requests, routing, authentication, schema checks and the
faults tests inject."""

# Waiting helpers take explicit ``timeout`` parameters: tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Literal

from aiohttp import BodyPartReader, web

from .constants import API_PREFIX, JSON, Payload
from .core import FakeCore
from .plumbing import SERVER_ERROR_MESSAGES, Delay, HTTPError, Incoming, Injection, Route, UserRef, json_response
from .ratelimits import Verdict
from .records import RecordedPart, RecordedRequest
from .world import FakeChannel

_log = logging.getLogger(__name__)


class RestServer(FakeCore):
    """Answers ``/api/v10/...`` through the route table, and injects faults into the answers."""

    # Fault injection

    def set_channel_fault(self, channel_id: int | FakeChannel, status: int | None) -> None:
        """Make creating messages in a channel fail: 403 Missing Permissions, 404 Unknown Channel, 5xx.

        ``None`` removes the fault.
        """
        cid = channel_id.id if isinstance(channel_id, FakeChannel) else channel_id
        if status is None:
            self._channel_faults.pop(cid, None)
        elif status in (403, 404) or status >= 500:
            self._channel_faults[cid] = status
        else:
            raise ValueError(f"unsupported channel fault status {status}")

    def close_dms(self, user: UserRef) -> None:
        """The member closed their DMs: messages to them answer 403 / 50007."""
        self._closed_dms.add(self._user(user).id)

    def open_dms(self, user: UserRef) -> None:
        self._closed_dms.discard(self._user(user).id)

    def rate_limit_next(
        self,
        n: int,
        route_substring: str,
        retry_after: float = 0.2,
        *,
        method: str | None = None,
        is_global: bool = False,
    ) -> None:
        """The next ``n`` requests whose path contains ``route_substring`` answer 429, then pass."""
        body: Payload = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        self._injections.append(
            Injection(n, route_substring, method, 429, body, retry_after=retry_after, is_global=is_global)
        )

    def fail_next(
        self,
        n: int,
        route_substring: str,
        status: int = 500,
        *,
        method: str | None = None,
        body: Payload | None = None,
    ) -> None:
        """The next ``n`` matching requests answer ``status`` with ``body`` (default: Discord's for it)."""
        self._injections.append(Injection(n, route_substring, method, status, body))

    def delay_next(self, n: int, route_substring: str, seconds: float, *, method: str | None = None) -> None:
        """The next ``n`` matching requests are handled and recorded as usual (a message is created), but their
        answer is held back for ``seconds`` (or until the fake stops): Discord did the work and the answer is
        late or lost, e.g. to kill a bot while it waits for it. :attr:`held_answers` counts answers on hold."""
        self._delays.append(Delay(n, route_substring, method, seconds))

    def _take_delay(self, method: str, path: str) -> float | None:
        for delay in self._delays:
            if delay.matches(method, path):
                delay.remaining -= 1
                return delay.seconds
        return None

    # Inspection

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 5.0, *, since: int = 0
    ) -> RecordedRequest:
        for request in self.requests[since:]:
            if predicate(request):
                return request
        future: asyncio.Future[RecordedRequest] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._request_waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no matching request within {timeout}s; latest: {self.describe_requests(last=10)}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._request_waiters.remove(entry)

    def requests_to(self, route_substring: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in self.requests if route_substring in r.path and (method is None or r.method == method.upper())
        ]

    # Plumbing

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        # Literal routes (e.g. /users/@me) are listed before templated ones with the same shape.
        for route in self._routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None

    async def _read(self, request: web.Request, path: str) -> Incoming:
        query = {k: v for k, v in request.query.items()}
        body: JSON = None
        parts: tuple[RecordedPart, ...] | None = None
        if request.content_type.startswith("multipart/"):
            collected: list[RecordedPart] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: discord.py never sends it
                    continue
                data = await part.read(decode=False)
                collected.append(
                    RecordedPart(
                        name=part.name or "",
                        filename=part.filename,
                        content_type=part.headers.get("Content-Type"),
                        data=bytes(data),
                    )
                )
            parts = tuple(collected)
            payload = next((p for p in parts if p.name == "payload_json"), None)
            if payload is not None:
                try:
                    body = json.loads(payload.data)
                except ValueError:
                    body = None
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", errors="replace")
        return Incoming(request, request.method, path, query, body, parts)

    def _auth_state(self, request: web.Request) -> Literal["valid", "invalid", "missing"]:
        header = request.headers.get("Authorization")
        if header is None:
            return "missing"
        expected = f"Bot {self.world.token}"
        return "valid" if hmac.compare_digest(header.encode(), expected.encode()) else "invalid"

    async def _rest_entry(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw_path = request.path
        on_api = raw_path.startswith(API_PREFIX + "/")
        path = raw_path[len(API_PREFIX) :] if on_api else raw_path
        incoming = await self._read(request, path)
        auth = self._auth_state(request)
        matched = self._match(request.method, path) if on_api else None
        route = matched[0] if matched else None
        try:
            response = await self._handle(incoming, matched, auth)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it visible
            _log.exception("fake Discord failed on %s %s", request.method, path)
            self.internal_errors.append(f"{request.method} {path}: {exc!r}")
            response = json_response({"message": "500: Internal Server Error", "code": 0}, 500)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=incoming.query,
            json=incoming.json,
            parts=incoming.parts,
            headers=headers,
            auth=auth,
            time=arrived,
            status=response.status,
            route=None if route is None else f"{route.method} {route.template}",
        )
        self.requests.append(record)
        for predicate, future in list(self._request_waiters):
            if not future.done():
                try:
                    if predicate(record):
                        future.set_result(record)
                except Exception as exc:
                    future.set_exception(exc)
        held = self._take_delay(request.method, path) if route is not None else None
        if held is not None:
            self.held_answers += 1
            self._notify_state()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), held)
            finally:
                self.held_answers -= 1
        return response

    async def _handle(
        self,
        incoming: Incoming,
        matched: tuple[Route, dict[str, str]] | None,
        auth: Literal["valid", "invalid", "missing"],
    ) -> web.StreamResponse:
        if matched is None:
            self._check_schema(incoming)
            return json_response({"message": "404: Not Found", "code": 0}, 404)
        route, params = matched
        if route.auth and auth != "valid":
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        errors = self._check_schema(incoming)
        injected = self._injected_response(incoming.method, incoming.path)
        if injected is not None:
            return injected
        verdict = self._rate_limit(route, params)
        if verdict is not None and not verdict.allowed:
            return json_response(verdict.body(), 429, verdict.headers(time.time()))
        if errors and self.reject_invalid_bodies:
            return json_response({"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400)
        try:
            response = await route.handler(incoming, params)
        except HTTPError as error:
            response = json_response(error.body, error.status)
        if verdict is not None:
            response.headers.update(verdict.headers(time.time()))
        return response

    def _rate_limit(self, route: Route, params: dict[str, str]) -> Verdict | None:
        """Count the request against Discord's limits, when the fake enforces them. Interaction callbacks and
        webhooks (they need no bot token) are outside the bot's global limit, as on Discord."""
        if self.rate_limits is None:
            return None
        return self.rate_limits.check(f"{route.method} {route.template}", params, counts_globally=route.auth)

    def _check_schema(self, incoming: Incoming) -> list[str]:
        if self.validator is None:
            return []
        if incoming.parts is not None:
            fields: dict[str, str | bytes] = {p.name: p.data for p in incoming.parts}
            errors = self.validator.validate_multipart(incoming.method, incoming.path, fields)
        else:
            errors = self.validator.validate(incoming.method, incoming.path, incoming.json)
        for error in errors:
            self.schema_errors.append((incoming.method, incoming.path, error))
        return errors

    def _injected_response(self, method: str, path: str) -> web.Response | None:
        for injection in self._injections:
            if not injection.matches(method, path):
                continue
            injection.remaining -= 1
            if injection.status == 429:
                retry = injection.retry_after
                headers = {
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                    "X-RateLimit-Reset-After": f"{retry:.3f}",
                    "X-RateLimit-Bucket": "fake" + secrets.token_hex(8),
                    "X-RateLimit-Scope": "global" if injection.is_global else "user",
                    "Retry-After": str(max(1, int(retry + 0.999))),
                    # Without Via discord.py takes a 429 for a Cloudflare ban and raises instead of retrying.
                    "Via": "1.1 google",
                }
                if injection.is_global:
                    headers["X-RateLimit-Global"] = "true"
                return json_response(injection.body, 429, headers)
            body = injection.body or {
                "message": SERVER_ERROR_MESSAGES.get(injection.status, f"{injection.status}: Injected failure"),
                "code": 0,
            }
            return json_response(body, injection.status)
        return None

    async def _attachment_entry(self, request: web.Request) -> web.StreamResponse:
        try:
            _filename, content_type, data = self._attachment_blobs[int(request.match_info["attachment_id"])]
        except (KeyError, ValueError):
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, headers={"Content-Type": content_type})

"""The AI/ML API client for Luma's Dream Machine: one request seam, typed errors, pure parsing.

Every create or extend costs 500 000 tokens, so the rule here is: a create is retried only when the API
provably did not accept it (the connection was never made, or the API answered 429). Anything else after
the request may have left (a 5xx, a timeout, a reset, a garbled answer) raises CreateOutcomeUnknown and is
never resent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from .config import Secret
from .models import KNOWN_API_STATES, LEGACY_MODEL, ApiGeneration, GenerationOptions, ListedGeneration

log = logging.getLogger(__name__)

LOOKUP_BATCH_SIZE = 50
_MAX_DETAIL_LENGTH = 300


class VideoApiError(Exception):
    """Root of every error the video API client raises."""

    status: int | None = None
    default_user_message = "The video service had a problem. Please try again in a few minutes."

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.detail = detail

    @property
    def user_message(self) -> str:
        """What a member is told, in plain words."""
        return self.default_user_message


class ApiRequestInvalid(VideoApiError):
    """400: the API refused the request's content."""

    status = 400

    @property
    def user_message(self) -> str:
        reason = self.detail or "no reason given"
        return f"The video service refused this request: {reason}"


class ApiUnauthorized(VideoApiError):
    """401: the API key is missing or wrong. An operator problem, not the member's."""

    status = 401
    default_user_message = (
        "The bot is misconfigured: the video service did not accept its API key. The bot's operator has been alerted."
    )


class ApiOutOfCredits(VideoApiError):
    """403: the key is valid but the account may not generate (out of credits)."""

    status = 403
    default_user_message = (
        "Video generation is unavailable right now: the bot's AI/ML account is out of credits. "
        "Please tell the server's moderators."
    )


class ApiNotFound(VideoApiError):
    """404: unknown id, or an endpoint that no longer exists."""

    status = 404
    default_user_message = "The video service does not know that generation."


class ApiRateLimited(VideoApiError):
    """429: too many requests or too many generations at once."""

    status = 429
    default_user_message = (
        "The video service is busy (rate limited). Nothing was charged; please try again in a minute."
    )

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(message, status=429, detail=detail)
        self.retry_after = retry_after


class ApiServerError(VideoApiError):
    """5xx: the API is in trouble."""

    default_user_message = "The video service is having trouble right now. Please try again in a few minutes."


class ApiUnavailable(VideoApiError):
    """No usable answer: the connection failed, timed out or was cut."""

    default_user_message = "The video service cannot be reached right now. Please try again in a few minutes."

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        # False only when the connection was never made, which proves the API did not see the request.
        self.request_sent = request_sent


class ApiMalformedResponse(VideoApiError):
    """A 2xx whose body is not what the API documents."""


class CreateOutcomeUnknown(VideoApiError):
    """A create or extend may have been accepted, but no usable answer came back. Never resend it."""

    default_user_message = (
        "The video service did not confirm this request. It was not sent again, to avoid paying twice."
    )


_ERRORS_BY_STATUS: dict[int, type[VideoApiError]] = {
    400: ApiRequestInvalid,
    401: ApiUnauthorized,
    403: ApiOutOfCredits,
    404: ApiNotFound,
    410: ApiNotFound,
    422: ApiRequestInvalid,
}


def error_message_from_body(body: str) -> str | None:
    """The human-readable reason in an error body: AI/ML's `message`, a gateway's `detail`, or plain text."""
    text = body.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_DETAIL_LENGTH]
    if isinstance(data, dict):
        parts: list[str] = []
        for key in ("message", "detail", "error", "details", "errors"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                parts.append(value.strip())
            elif isinstance(value, dict) and isinstance(value.get("message"), str):
                parts.append(value["message"])
            elif isinstance(value, list) and value:
                parts.append("; ".join(_describe_detail(item) for item in value[:5]))
        if parts:
            return " — ".join(dict.fromkeys(parts))[:_MAX_DETAIL_LENGTH]
    return text[:_MAX_DETAIL_LENGTH]


def _describe_detail(item: object) -> str:
    if isinstance(item, dict):
        message = item.get("message") or item.get("msg")
        if isinstance(message, str):
            return message
    return str(item)


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def error_for_response(status: int, body: str, headers: Mapping[str, str] | None = None) -> VideoApiError:
    """Map an HTTP error answer to the error family: the one place status codes become errors."""
    detail = error_message_from_body(body)
    message = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429:
        return ApiRateLimited(message, retry_after=_retry_after_seconds(headers or {}), detail=detail)
    if status >= 500:
        return ApiServerError(message, status=status, detail=detail)
    error_type = _ERRORS_BY_STATUS.get(status, ApiRequestInvalid)
    return error_type(message, status=status, detail=detail)


# --- parsing: pure functions over decoded JSON ---------------------------------------------------------


def _url_of(value: object) -> str | None:
    """A URL given either as a string or as an object with `url` (deployments differ)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        url = value.get("url")
        if isinstance(url, str) and url:
            return url
    return None


def parse_generation(data: object) -> ApiGeneration:
    """One generation object; the upstream service wraps it in a one-element list, so accept that too."""
    if isinstance(data, list):
        if len(data) != 1:
            raise ApiMalformedResponse(f"expected one generation, got a list of {len(data)}")
        data = data[0]
    if not isinstance(data, dict):
        raise ApiMalformedResponse(f"expected a generation object, got {type(data).__name__}")
    generation_id = data.get("id")
    if not isinstance(generation_id, str) or not generation_id:
        raise ApiMalformedResponse("generation object without an id")
    state = data.get("state")
    if not isinstance(state, str) or not state:
        raise ApiMalformedResponse(f"generation {generation_id} without a state")
    state = state.lower()
    if state not in KNOWN_API_STATES:
        log.warning("Generation %s has a state not seen before: %r (treated as running)", generation_id, state)

    video = data.get("video")
    video_url = thumbnail_url = None
    if isinstance(video, dict):
        video_url = _url_of(video.get("url")) or _url_of(video.get("download_url"))
        thumbnail_url = _url_of(video.get("thumbnail"))
    if thumbnail_url is None and "thumbnail" in data:
        thumbnail_url = _url_of(data["thumbnail"])

    failure = data.get("failure_reason")
    estimate = data.get("estimate_wait_seconds")
    prompt = data.get("prompt")
    return ApiGeneration(
        id=generation_id,
        state=state,
        prompt=prompt if isinstance(prompt, str) else None,
        video_url=video_url,
        thumbnail_url=thumbnail_url,
        last_frame_url=_url_of(data["last_frame"]) if "last_frame" in data else None,
        failure_reason=failure if isinstance(failure, str) and failure else None,
        estimate_wait_seconds=float(estimate) if isinstance(estimate, int | float) else None,
        raw=data,
        created_at=parse_timestamp(data.get("created_at")),
    )


def parse_timestamp(value: object) -> float | None:
    """An ISO 8601 time (a zone-less one is UTC) as epoch seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_generation_listing(data: object) -> list[ListedGeneration]:
    """The account's list of generations: `{"luma_generation_id", "prompt"}` entries (unreadable ones skipped)."""
    if isinstance(data, dict):
        data = next((data[key] for key in ("generations", "data", "items") if isinstance(data.get(key), list)), None)
    if not isinstance(data, list):
        raise ApiMalformedResponse("the list of generations is not a list")
    listed: list[ListedGeneration] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        generation_id = item.get("luma_generation_id") or item.get("id")
        prompt = item.get("prompt") or item.get("user_prompt")
        if isinstance(generation_id, str) and generation_id and isinstance(prompt, str):
            listed.append(ListedGeneration(generation_id, prompt))
    return listed


def parse_generation_list(data: object) -> list[ApiGeneration]:
    """The batch look-up answer: a list of generation objects (unparseable entries are skipped)."""
    if isinstance(data, dict):
        # Tolerate a wrapper object, as some gateways send.
        for key in ("generations", "data", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data]
    if not isinstance(data, list):
        raise ApiMalformedResponse(f"expected a list of generations, got {type(data).__name__}")
    generations: list[ApiGeneration] = []
    for item in data:
        try:
            generations.append(parse_generation(item))
        except ApiMalformedResponse as error:
            log.warning("Skipping an unreadable generation in a look-up answer: %s", error)
    return generations


def create_body(options: GenerationOptions) -> dict[str, Any]:
    """The legacy create/extend body."""
    body: dict[str, Any] = {
        "user_prompt": options.prompt,
        "aspect_ratio": options.aspect_ratio,
        "expand_prompt": options.expand_prompt,
    }
    if options.image_url:
        body["image_url"] = options.image_url
    if options.image_end_url:
        body["image_end_url"] = options.image_end_url
    return body


def lookup_params(ids: Sequence[str]) -> list[tuple[str, str]]:
    return [(f"ids[{index}]", generation_id) for index, generation_id in enumerate(ids)]


@dataclass(frozen=True)
class Balance:
    """The AI/ML account's balance, in the API's credits."""

    amount: float
    low: bool | None = None


def parse_balance(data: object) -> Balance:
    if isinstance(data, dict):
        amount = data.get("balance")
        low = data.get("lowBalance")
        try:
            if isinstance(amount, int | float | str) and not isinstance(amount, bool):
                return Balance(float(amount), low if isinstance(low, bool) else None)
        except ValueError:
            pass
    raise ApiMalformedResponse("balance answer without a numeric balance")


# --- the clients ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After honoured up to a cap."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


Sleep = Callable[[float], Awaitable[None]]


class AimlClient:
    """What every AI/ML endpoint shares: the request seam, the retry rules, the account balance."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        *,
        retry: RetryPolicy = RetryPolicy(),
        read_timeout: float = 30.0,
        create_timeout: float = 120.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._retry = retry
        self._read_timeout = read_timeout
        self._create_timeout = create_timeout
        self._sleep = sleep

    async def balance(self) -> Balance:
        """The account's balance; the newer /v2/billing answers where the older path is gone."""
        try:
            data = await self._read("/v1/billing/balance", [])
        except ApiNotFound:
            data = await self._read("/v2/billing", [])
        return parse_balance(data)

    async def _create(self, path: str, body: dict[str, Any], parse: Callable[[object], ApiGeneration]) -> ApiGeneration:
        """Send a create or extend request; resent only when the API provably refused it."""
        for attempt in range(self._retry.attempts):
            last_attempt = attempt == self._retry.attempts - 1
            try:
                data = await self._request("POST", path, json_body=body, timeout_seconds=self._create_timeout)
            except ApiRateLimited as error:
                # A 429 proves the request was refused, so it may be sent again.
                if last_attempt:
                    raise
                await self._sleep(self._retry.delay(attempt, error.retry_after))
                continue
            except ApiUnavailable as error:
                if error.request_sent:
                    raise CreateOutcomeUnknown(f"{path}: {error}") from error
                if last_attempt:
                    raise
                await self._sleep(self._retry.delay(attempt))
                continue
            except ApiServerError as error:
                raise CreateOutcomeUnknown(f"{path}: {error}", status=error.status) from error
            except ApiMalformedResponse as error:
                # A 2xx came back, so the API accepted (and charged) it: only its id was lost.
                raise CreateOutcomeUnknown(f"{path}: unreadable answer: {error}") from error
            try:
                return parse(data)
            except ApiMalformedResponse as error:
                raise CreateOutcomeUnknown(f"{path}: unreadable answer: {error}") from error
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _read(self, path: str, params: list[tuple[str, str]]) -> object:
        for attempt in range(self._retry.attempts):
            try:
                return await self._request("GET", path, params=params, timeout_seconds=self._read_timeout)
            except (ApiRateLimited, ApiServerError, ApiUnavailable, ApiMalformedResponse) as error:
                if attempt == self._retry.attempts - 1:
                    raise
                retry_after = error.retry_after if isinstance(error, ApiRateLimited) else None
                delay = self._retry.delay(attempt, retry_after)
                log.info("Look-up %s failed (%s); retrying in %.1fs", path, error, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: list[tuple[str, str]] | None = None,
        timeout_seconds: float,
    ) -> object:
        """The one place an HTTP request leaves: returns decoded JSON or raises a VideoApiError."""
        url = self._base_url + path
        headers = {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            async with self._session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as response:
                # A body that is not valid UTF-8 must end as a malformed answer, not escape the error family.
                body = await response.text(errors="replace")
                log.debug("%s %s -> %s", method, path, response.status)
                if not 200 <= response.status < 300:
                    error = error_for_response(response.status, body, response.headers)
                    if isinstance(error, ApiUnauthorized):
                        log.error("The AI/ML API refused the API key (401): check AIML_API_KEY")
                    raise error
        except aiohttp.ClientConnectorError as error:
            raise ApiUnavailable(f"cannot connect: {error.os_error}", request_sent=False) from error
        except aiohttp.ConnectionTimeoutError as error:
            raise ApiUnavailable("connection timed out", request_sent=False) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ApiUnavailable(f"{type(error).__name__}: {error}", request_sent=True) from error
        try:
            return json.loads(body)
        except ValueError as error:
            raise ApiMalformedResponse(f"{method} {path}: answer is not JSON") from error


class LumaClient(AimlClient):
    """The legacy Luma endpoints of the AI/ML API (/luma-ai/...)."""

    def can_list(self, model: str) -> bool:
        return model == LEGACY_MODEL

    async def create(self, options: GenerationOptions, model: str = LEGACY_MODEL) -> ApiGeneration:
        """Start a generation. Raises CreateOutcomeUnknown when it may have been accepted without an answer."""
        return await self._create("/luma-ai/generations", create_body(options), parse_generation)

    async def extend(self, parent_id: str, options: GenerationOptions, model: str = LEGACY_MODEL) -> ApiGeneration:
        """Continue a completed generation; the answer is a new generation."""
        path = f"/luma-ai/generations/{quote(parent_id, safe='')}/extend"
        return await self._create(path, create_body(options), parse_generation)

    async def fetch_many(self, ids: Sequence[str]) -> dict[str, ApiGeneration]:
        """Look up generations in batches; ids the API does not know are absent from the result."""
        unique_ids = list(dict.fromkeys(ids))
        found: dict[str, ApiGeneration] = {}
        for start in range(0, len(unique_ids), LOOKUP_BATCH_SIZE):
            chunk = unique_ids[start : start + LOOKUP_BATCH_SIZE]
            data = await self._read("/luma-ai/generation", lookup_params(chunk))
            wanted = set(chunk)
            # Match by id, never by position: the API may reorder or omit entries.
            for generation in parse_generation_list(data):
                if generation.id in wanted:
                    found[generation.id] = generation
        return found

    async def fetch(self, generation_id: str) -> ApiGeneration | None:
        """One generation, fresh from the API, or None if the API does not know it."""
        return (await self.fetch_many([generation_id])).get(generation_id)

    async def list_generations(self) -> list[ListedGeneration]:
        """Every generation of the account, by id and prompt: where a create whose answer was lost can be found."""
        return parse_generation_listing(await self._read("/luma-ai/generations", []))

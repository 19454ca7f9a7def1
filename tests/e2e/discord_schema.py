"""Validate the request bodies a bot sends against Discord's published OpenAPI description.

The description lives *beside* the checkout (``../shared/discord-api-spec/openapi.json``) or wherever
``DISCORD_OPENAPI_PATH`` points; it is never copied into the project. When it is absent,
:func:`load_validator` returns ``None`` so tests can ``pytest.skip`` with a clear message.

The spec is OpenAPI 3.1, whose schemas are JSON Schema 2020-12: ``type: ["string", "null"]`` and
``oneOf: [{"type": "null"}, {"$ref": ...}]`` express nullability. (An OpenAPI 3.0 ``nullable: true`` is
rewritten into the 3.1 form so an older copy still works.) ``$ref`` s point into ``#/components/schemas``
and are resolved with ``referencing``.

Snowflakes are described as decimal strings, but the real API also accepts JSON integers and discord.py
relies on that (``recipient_id`` when opening a DM, ``attachments[].id`` = the index of an uploaded file),
so schemas with ``format: snowflake`` are widened to accept non-negative integers too.

Discord itself silently ignores fields it does not know, which hides typos such as ``"ephemral": true``.
No request schema in the description says ``additionalProperties: false``, so by default (``strict``)
every object schema that lists its ``properties`` is additionally closed with
``unevaluatedProperties: false``: an unknown field is reported as an error. A few fields that discord.py
2.7 always sends and Discord accepts, but that the description omits, are tolerated
(:data:`DISCORD_PY_EXTRAS`), so that only the bot's own mistakes show up.

Beside the description, every body is checked against Discord's documented size limits that the description leaves
out or states more loosely (2000 characters of content, 6000 per message's embeds, unique custom ids, ...): see
``discord_text_limits.py``. ``check_limits=False`` turns that off.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

# jsonschema ships no type information (types-jsonschema is not a project dependency).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .discord_text_limits import limit_errors

__all__ = ["DISCORD_PY_EXTRAS", "SPEC_ENV_VAR", "RequestValidator", "default_spec_path", "load_validator"]

SPEC_ENV_VAR = "DISCORD_OPENAPI_PATH"
_SPEC_URI = "urn:discord-openapi"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
# Paths may arrive with the API prefix discord.py puts in front of every route.
_API_PREFIX = re.compile(r"^/api(?:/v\d+)?(?=/)")
_MAX_MESSAGE = 300

_NULLABLE_BOOLEAN: dict[str, Any] = {"type": ["boolean", "null"]}
# Fields discord.py 2.7 sends on its own that the description does not list (found by running this
# validator on discord.py's real requests). Schema name -> extra property -> its schema.
DISCORD_PY_EXTRAS: dict[str, dict[str, Any]] = {
    # Command.to_dict() always has "nsfw" (a documented command field, missing from the request schemas).
    "ApplicationCommandCreateRequest": {"nsfw": _NULLABLE_BOOLEAN},
    "ApplicationCommandUpdateRequest": {"nsfw": _NULLABLE_BOOLEAN},
    "ApplicationCommandPatchRequestPartial": {"nsfw": _NULLABLE_BOOLEAN},
    # Embed.to_dict() carries "flags" (embed flags) when the embed has any.
    "RichEmbed": {"flags": {"type": ["integer", "null"]}},
    # Edits are built by the same helpers as creates and keep "tts", which Discord ignores on edit.
    "MessageEditRequestPartial": {"tts": _NULLABLE_BOOLEAN},
    "IncomingWebhookUpdateRequestPartial": {"tts": _NULLABLE_BOOLEAN},
    "IncomingWebhookUpdateForInteractionCallbackRequestPartial": {"tts": _NULLABLE_BOOLEAN},
}


def default_spec_path() -> Path:
    """Where the description is expected: ``$DISCORD_OPENAPI_PATH``, else ``../shared`` beside the checkout."""
    override = os.environ.get(SPEC_ENV_VAR)
    if override:
        return Path(override)
    # tests/e2e/discord_schema.py -> parents[2] is the checkout, parents[3] the directory holding it.
    return Path(__file__).resolve().parents[3] / "shared" / "discord-api-spec" / "openapi.json"


def load_validator(path: Path | str | None = None, *, strict: bool = True) -> RequestValidator | None:
    """Load the description once per (path, strict); ``None`` when the file does not exist."""
    spec_path = Path(path) if path is not None else default_spec_path()
    if not spec_path.is_file():
        return None
    return _load_cached(str(spec_path.resolve()), strict)


@lru_cache(maxsize=4)
def _load_cached(path: str, strict: bool) -> RequestValidator:
    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)
    return RequestValidator(spec, strict=strict, source=path)


@dataclass(frozen=True)
class _PathTemplate:
    template: str
    segments: tuple[str, ...]
    literal_count: int

    def matches(self, segments: Sequence[str]) -> bool:
        if len(segments) != len(self.segments):
            return False
        for pattern, actual in zip(self.segments, segments, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not actual:
                    return False
            elif pattern != actual:
                return False
        return True


class RequestValidator:
    """Checks request bodies against the operations of an OpenAPI description."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        strict: bool = True,
        tolerated: Mapping[str, Mapping[str, Any]] = DISCORD_PY_EXTRAS,
        source: str = "<memory>",
        check_limits: bool = True,
    ) -> None:
        # Work on a private copy: the rewrites below must not leak into a caller's dict.
        document: dict[str, Any] = copy.deepcopy(dict(spec))
        self.source = source
        self.strict = strict
        self.check_limits = check_limits
        self.openapi_version: str = str(document.get("openapi", ""))
        if self.openapi_version.startswith("3.0"):
            _rewrite_nullable(document)
        _accept_integer_snowflakes(document)
        if strict:
            components = document.get("components", {}).get("schemas", {})
            for name, extras in tolerated.items():
                schema = components.get(name)
                if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
                    for prop, prop_schema in extras.items():
                        schema["properties"].setdefault(prop, dict(prop_schema))
            _close_object_schemas(components)
            for path_item in document.get("paths", {}).values():
                for method, operation in path_item.items():
                    if method in _HTTP_METHODS:
                        for media in operation.get("requestBody", {}).get("content", {}).values():
                            _close_object_schemas({"inline": media.get("schema", {})})
        self._document = document
        self._paths: dict[str, dict[str, Any]] = document.get("paths", {})
        self._templates = [
            _PathTemplate(
                template=template,
                segments=tuple(template.split("/")),
                literal_count=sum(1 for s in template.split("/") if not s.startswith("{")),
            )
            for template in self._paths
        ]
        resource: Resource[Any] = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}

    # -- lookup -------------------------------------------------------------------------------------------

    def match_path(self, path: str) -> str | None:
        """The path template of the spec that a concrete path matches, or None.

        ``/channels/1/messages`` -> ``/channels/{channel_id}/messages``.

        Literal segments win over parameters, so ``/users/@me/channels`` does not match ``/users/{user_id}/...``
        and ``.../messages/@original`` matches its own entry.
        """
        segments = _concrete_segments(path)
        candidates = [t for t in self._templates if t.matches(segments)]
        if not candidates:
            return None
        return max(candidates, key=lambda t: t.literal_count).template

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        template = self.match_path(path)
        if template is None:
            return None
        operation = self._paths[template].get(method.lower())
        return operation if isinstance(operation, dict) else None

    def has_operation(self, method: str, path: str) -> bool:
        return self.operation(method, path) is not None

    # -- validation ---------------------------------------------------------------------------------------

    def validate(self, method: str, path: str, body: Any, *, parts: Iterable[str] = ()) -> list[str]:
        """Errors for a JSON request body (``None`` = no body), by the description and by Discord's size limits.
        An empty list means valid. `parts`: the part names of a multipart body this one came in."""
        errors = self._validate_schema(method, path, body)
        template = self.match_path(path)
        if self.check_limits and template is not None:
            errors += limit_errors(method, template, body, parts)
        return errors

    def _validate_schema(self, method: str, path: str, body: Any) -> list[str]:
        template = self.match_path(path)
        if template is None:
            return [f"{method.upper()} {_strip(path)}: no such path in Discord's API description"]
        operation = self._paths[template].get(method.lower())
        if not isinstance(operation, dict):
            return [f"{method.upper()} {template}: no such operation in Discord's API description"]
        request_body = operation.get("requestBody")
        if request_body is None:
            if body is not None:
                return [f"{method.upper()} {template}: this operation takes no request body"]
            return []
        if body is None:
            if request_body.get("required", False):
                return [f"{method.upper()} {template}: a request body is required"]
            return []
        validator = self._validator_for(method.lower(), template)
        if validator is None:
            return []
        return [f"{method.upper()} {template}: {_describe(e)}" for e in _leaf_errors(validator.iter_errors(body))]

    def validate_multipart(self, method: str, path: str, fields: Mapping[str, str | bytes]) -> list[str]:
        """Errors for a multipart body: its ``payload_json`` part is checked like a JSON body.

        discord.py sends files as ``files[n]`` parts and everything else inside ``payload_json``.
        """
        errors: list[str] = []
        raw = fields.get("payload_json")
        if raw is None:
            body: Any = None
        else:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            try:
                body = json.loads(text)
            except ValueError as exc:
                return [f"{method.upper()} {_strip(path)}: payload_json is not JSON ({exc})"]
        unexpected = [name for name in fields if name != "payload_json" and not re.fullmatch(r"files\[\d+\]", name)]
        if unexpected:
            errors.append(f"{method.upper()} {_strip(path)}: unexpected multipart fields {sorted(unexpected)}")
        return errors + self.validate(method, path, body, parts=list(fields))

    def _validator_for(self, method: str, template: str) -> Draft202012Validator | None:
        key = (method, template)
        if key not in self._validators:
            content = self._paths[template][method]["requestBody"].get("content", {})
            if "application/json" in content:
                # A JSON pointer into the document; braces in templates are percent-encoded and
                # unquoted again by referencing.
                pointer = "/".join(
                    _escape_pointer(s)
                    for s in ("", "paths", template, method, "requestBody", "content", "application/json", "schema")
                )
                schema = {"$ref": f"{_SPEC_URI}#{quote(pointer, safe='/~')}"}
                self._validators[key] = Draft202012Validator(schema, registry=self._registry)
            else:
                self._validators[key] = None
        return self._validators[key]


# -- helpers ------------------------------------------------------------------------------------------------


def _strip(path: str) -> str:
    return _API_PREFIX.sub("", urlsplit(path).path)


def _concrete_segments(path: str) -> list[str]:
    return [unquote(s) for s in _strip(path).rstrip("/").split("/")]


def _escape_pointer(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _is_object_schema(schema: Mapping[str, Any]) -> bool:
    declared = schema.get("type")
    return declared == "object" or (isinstance(declared, list) and "object" in declared)


def _close_object_schemas(schemas: Mapping[str, Any]) -> None:
    """Add ``unevaluatedProperties: false`` to object schemas that list their properties.

    ``unevaluatedProperties`` (unlike ``additionalProperties``) sees properties evaluated through
    ``allOf``/``anyOf``/``$ref`` in the same schema, so composed schemas are not broken by it.
    """

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if (
                _is_object_schema(node)
                and isinstance(node.get("properties"), dict)
                and "additionalProperties" not in node
                and "unevaluatedProperties" not in node
                and "patternProperties" not in node
            ):
                node["unevaluatedProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(dict(schemas))


def _accept_integer_snowflakes(node: Any) -> None:
    if isinstance(node, dict):
        for value in list(node.values()):
            _accept_integer_snowflakes(value)
        if node.get("format") == "snowflake" and node.get("type") == "string":
            string_form = dict(node)
            node.clear()
            node["anyOf"] = [string_form, {"type": "integer", "minimum": 0}]
    elif isinstance(node, list):
        for value in node:
            _accept_integer_snowflakes(value)


def _rewrite_nullable(node: Any) -> None:
    """OpenAPI 3.0's ``nullable: true`` becomes an explicit ``null`` alternative (3.1 style)."""
    if isinstance(node, dict):
        for value in list(node.values()):
            _rewrite_nullable(value)
        if node.pop("nullable", False) is True:
            inner = dict(node)
            node.clear()
            node["anyOf"] = [inner, {"type": "null"}]
    elif isinstance(node, list):
        for value in node:
            _rewrite_nullable(value)


def _is_discriminator_miss(error: ValidationError) -> bool:
    """True when a union branch failed on its tag: ``type`` (or the value's own nullness) did not match."""
    relative = list(error.relative_path)
    if relative == ["type"] and error.validator in ("enum", "const"):
        return True
    # The {"type": "null"} branch of a nullable union.
    return not relative and error.validator == "type" and error.validator_value == "null"


def _leaf_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Replace vague "not valid under any of the given schemas" errors by the errors of the branch that was meant.

    A union branch was meant when its tag matched (its ``type`` enum/const, or non-null for nullable unions).
    """
    result: list[ValidationError] = []
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            branches: dict[Any, list[ValidationError]] = {}
            for sub in error.context:
                branch = sub.relative_schema_path[0] if sub.relative_schema_path else None
                branches.setdefault(branch, []).append(sub)
            meant = [errs for errs in branches.values() if not any(_is_discriminator_miss(e) for e in errs)]
            if len(meant) == 1:
                result.extend(_leaf_errors(meant[0]))
                continue
            if not meant:
                result.append(_no_branch_for_tag(error, branches.values()))
                continue
            best = best_match(error.context)
            if best is not None:
                result.extend(_leaf_errors([best]))
                continue
        result.append(error)
    return result


def _no_branch_for_tag(error: ValidationError, branches: Iterable[list[ValidationError]]) -> ValidationError:
    """Every branch of a tagged union rejected the tag: say which tags would have been accepted."""
    allowed: list[Any] = []
    for errs in branches:
        for sub in errs:
            if list(sub.relative_path) == ["type"] and sub.validator in ("enum", "const"):
                values = sub.validator_value if sub.validator == "enum" else [sub.validator_value]
                allowed.extend(v for v in values if v not in allowed)
    instance = error.instance.get("type") if isinstance(error.instance, dict) else error.instance
    if allowed:
        message = f"type {instance!r} is not one of the types allowed here {allowed}"
        return ValidationError(message, validator="enum", path=[*error.absolute_path, "type"])
    return ValidationError(f"{instance!r} is not null and not valid here", path=list(error.absolute_path))


def _describe(error: ValidationError) -> str:
    location = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return f"{location}: {message}"

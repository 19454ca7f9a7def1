"""A fake Discord (REST ``/api/v10`` + gateway websocket) on loopback for end-to-end tests.

The *real* discord.py client connects to it: point ``discord.http.Route.BASE`` at
``f"{fake.base_url}/api/v10"`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` at the ``url``
returned by ``GET /api/v10/gateway/bot``. Then tests drive the bot like members would
(:meth:`FakeDiscord.send_interaction` & co.), inspect what it sent (:attr:`FakeDiscord.requests`,
:meth:`FakeDiscord.messages_in`, :meth:`FakeDiscord.wait_for_message`) and inject faults
(:meth:`FakeDiscord.set_channel_fault`, :meth:`FakeDiscord.close_dms`, :meth:`FakeDiscord.rate_limit_next`,
:meth:`FakeDiscord.fail_next`, :meth:`FakeDiscord.delay_next`, :meth:`FakeDiscord.expire_interaction`).

Behaviours deliberately copied from Discord because bots get them wrong (see discord.py's ``http.py``,
``gateway.py``, ``webhook/async_.py`` and ``interactions.py``):

* JSON responses carry ``Content-Type: application/json`` exactly; discord.py only parses JSON when the
  header is exactly that (``json_or_text``), anything else becomes a ``str`` body.
* A 429 carries ``Via``: without it discord.py assumes a Cloudflare ban and raises instead of retrying.
* Interaction callbacks are only accepted within ``ack_deadline`` (3 s) of dispatch; later ones get
  ``10062 Unknown interaction``. A second callback gets ``40060``. Interaction webhooks (follow-ups,
  ``@original``) stop working when the token expires (``401 / 50027``).
* After a *deferred* (type 5) response, the first follow-up replaces the "thinking..." message instead of
  creating a new one, and inherits its ephemerality.
* Messages are checked against Discord's limits (2000 characters, 10 embeds, 6000 embed characters,
  the upload limit, no empty messages) and answer ``400 / 50035 Invalid Form Body`` like Discord.
* A message created with ``enforce_nonce`` and a nonce its author used in that channel within
  :attr:`FakeDiscord.nonce_window` seconds is not created again: the earlier message is returned (Discord's
  "a few minutes"; set the window to 0 to play a client that comes back after it).
* Gateway frames are plain TEXT JSON even though discord.py asks for ``compress=zlib-stream``:
  ``DiscordWebSocket.received_message`` only decompresses ``bytes`` frames.

Nothing here talks to anything but 127.0.0.1. The bot token is never stored in recorded requests or
printed: requests keep only whether the ``Authorization`` header matched.

Layout, by concern:

* ``constants`` - permission bits, intents, enum values, limits;
* ``world`` - users, guilds, channels, roles, members and the permission algorithm;
* ``records`` - what tests read: recorded requests, gateway frames, command syncs, message versions, callbacks;
* ``interaction_handle`` - what a test holds after dispatching an interaction;
* ``plumbing`` - Discord-shaped errors, parsed requests, routes, injected faults, gateway bookkeeping;
* ``core`` - the state every part shares (settings, records, the world as JSON);
* ``gateway``, ``messages``, ``rest`` - the websocket, the message store, the REST entry with its faults;
* ``routes/`` - REST routes by resource: ``guilds`` (users, application, guilds, channels), ``messages``,
  ``commands``, ``interactions`` (callbacks and webhooks);
* ``ratelimits`` - Discord's per-route and global rate limits, enforced when the fake is given them;
* ``members`` - driving the bot like members would;
* ``server`` - :class:`FakeDiscord`, composed of the parts above, and :func:`run_fake_discord`.
"""

from .constants import (
    ALL_PERMISSIONS,
    API_PREFIX,
    BOT_PERMISSIONS,
    DM_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    MODERATOR_PERMISSIONS,
    UPLOAD_LIMIT,
    CallbackType,
    ChannelType,
    Intents,
    InteractionType,
    MessageFlag,
    MessageKind,
    OptionType,
    Perm,
)
from .interaction_handle import InteractionHandle
from .plumbing import shard_for
from .ratelimits import RateLimits, RouteLimit
from .records import (
    CommandSync,
    CommandUnavailableError,
    FakeAttachment,
    FakeMessage,
    GatewayFrame,
    InteractionCallback,
    LateAcknowledgementError,
    RawValue,
    RecordedPart,
    RecordedRequest,
)
from .server import FakeDiscord, run_fake_discord
from .world import (
    DefaultIds,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeOverwrite,
    FakeRole,
    FakeUser,
    World,
    compute_permissions,
    default_world,
)

__all__ = [
    "ALL_PERMISSIONS",
    "API_PREFIX",
    "BOT_PERMISSIONS",
    "DM_PERMISSIONS",
    "EVERYONE_PERMISSIONS",
    "MODERATOR_PERMISSIONS",
    "UPLOAD_LIMIT",
    "CallbackType",
    "ChannelType",
    "CommandSync",
    "CommandUnavailableError",
    "DefaultIds",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeOverwrite",
    "FakeRole",
    "FakeUser",
    "GatewayFrame",
    "Intents",
    "InteractionCallback",
    "InteractionHandle",
    "InteractionType",
    "LateAcknowledgementError",
    "MessageFlag",
    "MessageKind",
    "OptionType",
    "Perm",
    "RateLimits",
    "RawValue",
    "RecordedPart",
    "RecordedRequest",
    "RouteLimit",
    "World",
    "compute_permissions",
    "default_world",
    "run_fake_discord",
    "shard_for",
]

"""Matrix event content for the bot's messages (pure: no I/O, no nio)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.render import Message

BOT_NAMESPACE = "org.neighborwatch"
"""Machine-readable tag on every message the bot sends (what it is, what it answers)."""


def notice_content(
    message: Message,
    *,
    reply_to: str | None = None,
    mentions: Sequence[str] = (),
    tag: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.notice", "body": message.body}
    if message.html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = message.html
    if reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    content["m.mentions"] = {"user_ids": sorted(set(mentions))}
    bot_tag: dict[str, Any] = dict(tag or {})
    if reply_to is not None:
        bot_tag.setdefault("in_reply_to", reply_to)
    content[BOT_NAMESPACE] = bot_tag
    return content


def image_content(
    url: str,
    *,
    filename: str,
    mimetype: str,
    size: int,
    width: int,
    height: int,
    caption: str,
    tag: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``m.image`` whose ``body`` is a caption (shown by clients that cannot show images)."""
    return {
        "msgtype": "m.image",
        "body": caption,
        "filename": filename,
        "url": url,
        "info": {"mimetype": mimetype, "size": size, "w": width, "h": height},
        "m.mentions": {},
        BOT_NAMESPACE: dict(tag or {}),
    }

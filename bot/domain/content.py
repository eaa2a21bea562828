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
    thread_root: str | None = None,
) -> dict[str, Any]:
    """An ``m.notice``; with ``thread_root`` it is posted in that event's thread (clients
    without threads show it as a reply to ``reply_to``, or to the root)."""
    content: dict[str, Any] = {"msgtype": "m.notice", "body": message.body}
    if message.html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = message.html
    if thread_root is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root},
        }
    elif reply_to is not None:
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
    file: Any = None,
    filename: str,
    mimetype: str,
    size: int,
    width: int,
    height: int,
    caption: str,
    tag: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``m.image`` whose ``body`` is a caption (shown by clients that cannot show images).

    ``url`` and ``file`` (encrypted media) may both be given; the sender keeps the one
    that fits the room."""
    return {
        "msgtype": "m.image",
        "body": caption,
        "filename": filename,
        "url": url,
        "file": file,
        "info": {"mimetype": mimetype, "size": size, "w": width, "h": height},
        "m.mentions": {},
        BOT_NAMESPACE: dict(tag or {}),
    }


MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})


def attachment_content(
    stored: Mapping[str, Any], caption: str, tag: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A received attachment sent on again unchanged (the original bytes, for evidence):
    its media reference (``url``, or ``file`` with the decryption keys) and ``info``,
    under a caption that says what it is."""
    msgtype = str(stored.get("msgtype", ""))
    return {
        "msgtype": msgtype if msgtype in MEDIA_MSGTYPES else "m.file",
        "body": caption,
        "filename": str(stored.get("body", "")) or "attachment",
        "url": stored.get("url"),
        "file": stored.get("file"),
        "info": dict(stored.get("info") or {}),
        "m.mentions": {},
        BOT_NAMESPACE: dict(tag or {}),
    }


def edit_content(
    target: str, message: Message, tag: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Replace the text of the bot's earlier message ``target`` (an event id or outbox ref)."""
    new = notice_content(message, tag=tag)
    new.pop("m.mentions", None)
    body = {key: value for key, value in new.items() if key != BOT_NAMESPACE}
    return {
        "msgtype": "m.notice",
        "body": "* " + message.body,
        "m.new_content": body,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        "m.mentions": {},
        BOT_NAMESPACE: dict(tag or {}),
    }

"""Alerts and wanted notices as OASIS CAP 1.2 (Common Alerting Protocol) documents (pure).

One ``<alert>`` per notice: ``msgType`` Alert while active, Cancel once found,
withdrawn or expired (referencing the original); ``scope`` Restricted — these go
to verified members of a station's rooms, not the public. ``atom_feed`` wraps
several in an Atom feed, the usual way CAP is published.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from xml.etree import ElementTree as ET

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class CapNotice:
    number: str
    kind: str  # alert | wanted
    level: str | None
    title: str | None
    text: str
    status: str  # active | found | withdrawn | expired
    station: str
    officer: str
    created_at: dt.datetime
    expires_at: dt.datetime
    closed_at: dt.datetime | None
    language: str
    photo_uri: str | None = None
    photo_mimetype: str | None = None


_SEVERITY = {"alert": "Severe", "advisory": "Moderate", "community": "Minor"}


def _time(moment: dt.datetime) -> str:
    """CAP wants ``2026-11-25T08:00:00+08:00``: no fractions, an explicit offset."""
    return moment.replace(microsecond=0).isoformat()


def identifier(sender: str, number: str) -> str:
    return f"neighborwatch:{sender.lstrip('@')}:{number}"


def alert_element(notice: CapNotice, sender: str) -> ET.Element:
    ET.register_namespace("", CAP_NS)
    q = f"{{{CAP_NS}}}"
    root = ET.Element(f"{q}alert")
    cancel = notice.status != "active"
    sent = notice.closed_at if cancel and notice.closed_at else notice.created_at

    def add(parent: ET.Element, name: str, value: str) -> ET.Element:
        child = ET.SubElement(parent, f"{q}{name}")
        child.text = value
        return child

    add(root, "identifier", identifier(sender, notice.number) + ("-cancel" if cancel else ""))
    add(root, "sender", sender)
    add(root, "sent", _time(sent))
    add(root, "status", "Actual")
    add(root, "msgType", "Cancel" if cancel else "Alert")
    add(root, "scope", "Restricted")
    add(root, "restriction", "Verified members of the neighbourhood rooms of " + notice.station)
    if cancel:
        add(root, "note", notice.status)
        add(
            root,
            "references",
            f"{sender},{identifier(sender, notice.number)},{_time(notice.created_at)}",
        )
    info = ET.SubElement(root, f"{q}info")
    add(info, "language", "zh-CN" if notice.language == "zh" else "en-US")
    add(info, "category", "Security")
    add(info, "event", "Wanted person" if notice.kind == "wanted" else "Community alert")
    add(info, "urgency", "Immediate" if notice.kind == "wanted" else "Expected")
    add(
        info,
        "severity",
        "Severe" if notice.kind == "wanted" else _SEVERITY.get(notice.level or "", "Minor"),
    )
    add(info, "certainty", "Observed" if notice.kind == "wanted" else "Likely")
    add(info, "expires", _time(notice.expires_at))
    add(info, "senderName", f"{notice.station} ({notice.officer})")
    add(info, "headline", (notice.title or notice.text)[:160])
    add(info, "description", notice.text)
    if notice.kind == "wanted":
        add(
            info,
            "instruction",
            "Do not approach. Report sightings to the officer through "
            "neighborwatch; in an emergency call 110.",
        )
    if notice.photo_uri:
        resource = ET.SubElement(info, f"{q}resource")
        add(resource, "resourceDesc", "Photo")
        add(resource, "mimeType", notice.photo_mimetype or "image/jpeg")
        add(resource, "uri", notice.photo_uri)
    return root


def to_xml(notice: CapNotice, sender: str) -> str:
    element = alert_element(notice, sender)
    return ET.tostring(element, encoding="unicode", xml_declaration=True)


def atom_feed(notices: list[CapNotice], sender: str, updated: dt.datetime) -> str:
    ET.register_namespace("", ATOM_NS)
    a = f"{{{ATOM_NS}}}"
    feed = ET.Element(f"{a}feed")
    ET.SubElement(feed, f"{a}id").text = f"neighborwatch:{sender.lstrip('@')}:cap"
    ET.SubElement(feed, f"{a}title").text = f"neighborwatch alerts ({sender})"
    ET.SubElement(feed, f"{a}updated").text = _time(updated)
    for notice in notices:
        entry = ET.SubElement(feed, f"{a}entry")
        ET.SubElement(entry, f"{a}id").text = identifier(sender, notice.number)
        ET.SubElement(entry, f"{a}title").text = (notice.title or notice.text)[:160]
        ET.SubElement(entry, f"{a}updated").text = _time(notice.closed_at or notice.created_at)
        content = ET.SubElement(entry, f"{a}content", {"type": "application/cap+xml"})
        content.append(alert_element(notice, sender))
    return ET.tostring(feed, encoding="unicode", xml_declaration=True)

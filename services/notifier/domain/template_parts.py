"""What a template is made of (shared by the template tables)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Button:
    """A quick-reply button of a WhatsApp template (its title lives in the approved template)."""

    title: str
    payload: str


@dataclass(frozen=True)
class Template:
    """One template's definition."""

    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    subject: str
    text: str
    html: str
    # Approved WhatsApp template name; empty for free-form text (chat replies).
    whatsapp_name: str = ""
    # Variables passed as the template's body parameters {{1}}, {{2}}, ... in order.
    whatsapp_params: tuple[str, ...] = ()
    whatsapp_buttons: tuple[Button, ...] = ()
    # Variables whose values may come from users and are redacted before use.
    free_text: tuple[str, ...] = ()
    # Variables that must be http(s) links.
    links: tuple[str, ...] = ()
    # Variables that are always available: the greeting name and the sender's name.
    implicit: tuple[str, ...] = field(default=("name", "sender_name"))


FOOTER_TEXT = "\n-- \n{sender_name}"
FOOTER_HTML = "<p style='color:#666'>{sender_name}</p>"

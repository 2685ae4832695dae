"""Linking a WhatsApp number to a chat visitor, for the e2e files that need a linked number."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.conftest import PHONE_NUMBER_ID, Stack, eventually
from whatsapp_emulator import app as whatsapp_app

# The WhatsApp answer once a number is proven and linked.
LINKED_TEXT = "now linked to your account"


async def link_whatsapp(stack: Stack, user: str, number: str, conversation: str) -> None:
    """Links a number the only way there is: the chat shows a one-time code, and the number's
    holder sends "LINK <code>" from it (a signed inbound message); waits for the answer."""
    asked = await stack.turn(
        user, f"send my billing messages to WhatsApp {number}", conversation=conversation
    )
    assert asked["intent"] == "whatsapp_opt_in" and number in asked["reply"], asked
    code = re.search(r"LINK (\d{8})", asked["reply"])
    assert code is not None, asked
    status, answer = await stack.post_whatsapp(
        whatsapp_app.inbound_payload(PHONE_NUMBER_ID, number, user, f"LINK {code.group(1)}", "")
    )
    assert status == 200, answer

    async def linked() -> list[dict[str, Any]]:
        return [
            m
            for m in await stack.whatsapp_messages()
            if m["to"].lstrip("+") == number.lstrip("+") and LINKED_TEXT in str(m)
        ]

    await eventually(linked)

"""What the bot says about WhatsApp: linking a number from the chat, and its answers on
WhatsApp to a "LINK <code>" message."""

from __future__ import annotations

from edge.domain.whatsapp_proof import Outcome

NO_WHATSAPP_HERE = "I can't set up WhatsApp messages from here, sorry."
TOO_MANY_LINK_CODES = (
    "You've asked for several WhatsApp link codes in the last hour; please try again later."
)


def whatsapp_already_linked(number: str) -> str:
    return f"WhatsApp {number} is already linked to your account; billing messages come there."


def send_link_code(number: str, business: str, code: str, minutes: int) -> str:
    return (
        f"To link WhatsApp {number} to your account, send this message from that WhatsApp "
        f"number to {'our WhatsApp number ' + business if business else 'our WhatsApp number'}"
        f": LINK {code} (the code works for {minutes} minutes). Until then, "
        "nothing about your account goes to that number."
    )


OPEN_WHATSAPP = "Open WhatsApp"
# Answered on WhatsApp to a "LINK <code>" message.
WHATSAPP_LINK_OUTCOMES = {
    Outcome.LINKED: (
        "Done: this WhatsApp number is now linked to your account, and billing messages will "
        "come here. Reply here any time for billing help."
    ),
    Outcome.WRONG_CODE: (
        "That code doesn't match. Check the code shown in the chat and send LINK followed by it."
    ),
    Outcome.VOID: (
        "Too many wrong codes: that link code no longer works. Ask in the chat for a new one."
    ),
    Outcome.NO_CHALLENGE: (
        "There's no link waiting for this number, or its code has expired. Ask in the chat "
        "for a new code."
    ),
}

# Answered on WhatsApp to STOP and START.
WHATSAPP_STOPPED = (
    "Done: you won't get WhatsApp messages from us any more; billing messages go to your "
    "email instead. Send START here to get them on WhatsApp again."
)
WHATSAPP_STARTED = (
    "Done: billing messages will come to this WhatsApp number again. Send STOP to stop them."
)
# What HELP on WhatsApp asks for: a person, as in the chat.
WHATSAPP_HELP_TEXT = "talk to a human"

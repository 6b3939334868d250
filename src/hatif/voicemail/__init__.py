"""Voicemail (FEATURES.md §2): mailboxes, leaving and hearing messages by phone, message-waiting (RFC 3842)."""

from __future__ import annotations

from .model import Mailbox, VoicemailSettings
from .mwi import CONTENT_TYPE, EVENT, Notifier, message_summary
from .service import announce, check_messages, leave_message

__all__ = [
    "CONTENT_TYPE",
    "EVENT",
    "Mailbox",
    "Notifier",
    "VoicemailSettings",
    "announce",
    "check_messages",
    "leave_message",
    "message_summary",
]

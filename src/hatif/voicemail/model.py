"""Voicemail configuration: mailboxes and where their messages are kept (FEATURES.md §2, voicemail).

A user's mailbox is named after the user; queues and groups have mailboxes of their own (`sales`). The
models follow `hatif.config`: frozen pydantic models that refuse unknown keys, so the lead can place them in
the configuration file (a tenant's `mailboxes`, the top-level `voicemail`) and get `file:line: field` errors.

Names end up in file paths (`folder/tenant/mailbox/...`), so a mailbox name is a username-like token that
cannot climb out of its folder (no `/`, no leading `.`), and PINs are refused unless written as strings: YAML
reads `0123` as the octal number 83, and a PIN that silently lost its leading zero locks its owner out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Language = Literal["en", "ar", "fa"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
"""A mailbox, owner or tenant name as it may appear in a file path: `hatif.config`'s username rule."""
_PIN = re.compile(r"[0-9]{4,12}")
_NUMBER = re.compile(r"[0-9]{1,32}")


def safe_name(value: str, what: str = "a mailbox name") -> str:
    """`value` if it is a name that is safe as one path component, else ValueError naming `what`."""
    if not NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not {what}: letters, digits and . _ + - (up to 64, starting with a letter "
                         "or digit)")
    return value


def _mailbox_name(value: str) -> str:
    return safe_name(value, "a mailbox name")


def _owner(value: str | None) -> str | None:
    return None if value is None else safe_name(value, "a username")


def _pin_text(value: object) -> object:
    if value is not None and not isinstance(value, str):
        raise ValueError("write the PIN in quotes (pin: '0123') so that leading zeros are kept")
    return value


def _pin(value: str | None) -> str | None:
    if value is not None and not _PIN.fullmatch(value):
        raise ValueError("a PIN is 4 to 12 digits")
    return value


def _extension(value: str | None) -> str | None:
    if value is not None and not _NUMBER.fullmatch(value):
        raise ValueError(f"{value!r} is not an extension: digits 0-9 only")
    return value


def _no_controls(value: str | None) -> str | None:
    if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters (such as line breaks)")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class Mailbox(_Model):
    """One mailbox: whose it is, how it greets, how long a message may be, whom to tell about new ones.

    `greeting` is the text spoken to callers: one string (spoken in the caller's language), or one text per
    language (a caller whose language has none hears the default greeting in their language);
    `greeting_file` is a recorded WAV instead. Without either, callers hear "<mailbox> is not available..."
    (`hatif.voicemail.prompts`). `extension` is the number dialed at the voicemail menu to reach the mailbox
    (a mailbox whose name is all digits is reached by its name too). A mailbox without a `pin` cannot be
    opened by phone.
    """

    name: Annotated[str, AfterValidator(_mailbox_name)]
    owner: Annotated[str | None, AfterValidator(_owner)] = None
    display_name: Annotated[str | None, AfterValidator(_no_controls)] = Field(default=None, min_length=1,
                                                                               max_length=100)
    extension: Annotated[str | None, AfterValidator(_extension)] = None
    pin: Annotated[str | None, BeforeValidator(_pin_text), AfterValidator(_pin)] = Field(default=None, repr=False)
    greeting: str | dict[Language, Annotated[str, Field(min_length=1, max_length=1000)]] | None = None
    greeting_file: Path | None = None
    max_seconds: float = Field(default=120.0, ge=5, le=600)
    min_seconds: float = Field(default=1.0, ge=0)
    notify: tuple[Annotated[str, AfterValidator(_owner)], ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Mailbox:
        if self.greeting is not None and self.greeting_file is not None:
            raise ValueError("give either greeting (text) or greeting_file (a WAV), not both")
        if isinstance(self.greeting, str) and not self.greeting.strip():
            raise ValueError("greeting: must not be empty")
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must be shorter than max_seconds "
                             f"({self.max_seconds})")
        return self

    @property
    def recipients(self) -> tuple[str, ...]:
        """The users told about new messages: `notify`, else the owner, else nobody."""
        if self.notify is not None:
            return self.notify
        return (self.owner,) if self.owner is not None else ()

    @property
    def numbers(self) -> tuple[str, ...]:
        """What a caller may key in at the voicemail menu to name this mailbox."""
        keys = [self.extension] if self.extension is not None else []
        if _NUMBER.fullmatch(self.name):
            keys.append(self.name)
        return tuple(keys)

    def greeting_text(self, language: Language) -> str | None:
        """The configured greeting for a caller speaking `language`, or None for the default one."""
        if isinstance(self.greeting, str):
            return self.greeting
        if self.greeting is not None:
            return self.greeting.get(language)
        return None


class VoicemailSettings(_Model):
    """Where messages are kept (`folder/<tenant>/<mailbox>/<UTC time>-<call id>.wav`) and the menu's limits."""

    folder: Path = Path("var/voicemail")
    pin_attempts: int = Field(default=3, ge=1, le=10)
    digit_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds the menu waits for a key (first digit) before going on."""
    inter_digit: float = Field(default=3.0, gt=0, le=30)

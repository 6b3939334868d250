"""What a UAS checks before it acts on a request, in RFC 3261 §8.2's order: the method (§8.2.1), the
Request-URI scheme and the Require header (§8.2.2), then what the body and the answer's body would be
(§8.2.3). Sans-IO: `inspect_request` returns the refusal to send, or None when the request may go on.

The checks come before authentication on purpose: they say nothing about users, and a client that
sends an INVITE Hatif could never accept learns why at once instead of after a challenge (RFC 4475
§3.3.2, §3.3.5, §3.3.6, §3.3.15 name the answers).
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import Request

# Methods of RFC 3261 and of the extensions in common use (RFC 3262, 3265, 3311, 3428, 3515, 3903, 6086).
# One of these that Hatif does not take is 405; any other method is unknown to Hatif and is 501 (§21.5.2).
KNOWN_METHODS = frozenset((
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK", "REFER", "NOTIFY",
    "SUBSCRIBE", "MESSAGE", "PUBLISH",
))
# Request-URI schemes Hatif routes (RFC 3261 §8.2.2.1; tel as RFC 3966 allows).
URI_SCHEMES = frozenset(("sip", "sips", "tel"))
# Option tags Hatif's UAS understands in a Require (the same as its Supported header).
SUPPORTED_OPTIONS = frozenset(("replaces", "timer"))
# The only body Hatif takes in an INVITE, and the only one its answers carry.
SDP = "application/sdp"


@dataclass(frozen=True, slots=True)
class InspectionRefusal:
    """A final response to send instead of processing the request; `reason` None means the default."""

    status: int
    reason: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


def inspect_request(request: Request, methods: frozenset[str], allow: str) -> InspectionRefusal | None:
    """The refusal RFC 3261 §8.2.1 to §8.2.3 call for, if any, for a request outside a dialog.

    `methods` are the methods the server takes outside a dialog; `allow` is its Allow header value.
    """
    method = request.method
    if method not in methods:
        status = 405 if method in KNOWN_METHODS else 501
        return InspectionRefusal(status, None, (("Allow", allow),))
    scheme = request.uri.scheme
    if scheme not in URI_SCHEMES:
        return InspectionRefusal(416, f"Unsupported URI Scheme: Request-URI is {scheme}:")
    if method == "REGISTER":
        # A binding is an AOR and contacts Hatif can reach: SIP or SIPS URIs (RFC 3261 §10.3, RFC 4475 §3.3.4).
        to = request.to.uri
        if to is None or to.scheme not in ("sip", "sips"):
            return InspectionRefusal(416, f"Unsupported URI Scheme: To is {to.scheme if to else '*'}:")
    if method in ("REGISTER", "INVITE"):
        # An INVITE's Contact is the dialog's remote target, which must be a SIP URI (RFC 3261 §8.1.1.8).
        for contact in request.contacts:
            if contact.uri is not None and contact.uri.scheme not in ("sip", "sips"):
                return InspectionRefusal(416, f"Unsupported URI Scheme: Contact is {contact.uri.scheme}:")
    unsupported = [tag.strip() for tag in request.headers.get_all("Require")
                   if tag.strip() and tag.strip().lower() not in SUPPORTED_OPTIONS]
    if unsupported:
        return InspectionRefusal(420, None, (("Unsupported", ", ".join(unsupported)),))
    if method == "INVITE":
        content_type = request.content_type
        if request.body and content_type is not None and content_type != SDP:
            return InspectionRefusal(415, f"Unsupported Media Type: {content_type[:40]}", (("Accept", SDP),))
        accept = request.headers.get_all("Accept")
        if accept and not any(_accepts_sdp(a) for a in accept):
            return InspectionRefusal(406, "Not Acceptable: Accept does not allow application/sdp")
    return None


def _accepts_sdp(media_range: str) -> bool:
    """Whether one Accept element (media-range *(SEMI accept-param), §20.1) covers application/sdp."""
    media = media_range.split(";", 1)[0].strip().lower().replace(" ", "")
    return media in (SDP, "application/*", "*/*")

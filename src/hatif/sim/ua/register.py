"""REGISTER for the simulator's user agent, with digest authentication (SHA-256 or MD5, RFC 8760 §2.4).

`423` is answered with the asked Min-Expires; a binding can be refreshed before it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

from ...sip.auth import AuthError, Challenge, digest_response, select_challenge
from ...sip.errors import ParseError
from ...sip.headers import Headers, NameAddr
from ...sip.message import Request, Response, make_response
from ...sip.transaction import (
    Action,
    DeliverResponse,
    TimedOut,
    TransportFailed,
)
from ...sip.uri import URI
from .shell import USER_AGENT, AgentShell

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """The outcome of a REGISTER: final status, the expiry the registrar granted, the digest algorithm."""

    status: int
    reason: str
    expires: int = 0
    algorithm: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Registering(AgentShell):
    """Digest credentials and registration (RFC 3261 §10, §22.4): the REGISTER half of a user agent.

    The last challenge is reused with a growing nonce-count (RFC 7616 §3.4), which saves a round trip per
    request and keeps the request count per address low under a server's flood limits.
    """

    password: str | None
    domain: str
    algorithms: tuple[str, ...]
    closed: bool
    registration: RegisterOutcome | None
    _challenges: dict[tuple[str, str], tuple[str, int]]
    _reg_call_id: str
    _reg_tag: str
    _reg_cseq: int
    _refresh: asyncio.Task[None] | None

    # -- digest ---------------------------------------------------------------------------------------

    def _learn_challenge(self, response: Response, method: str) -> bool:
        """Keep the challenge of a 401/407 for the next requests; False when none can be used."""
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        values = [v for v in response.headers.get_all(header) if _algorithm(v) in self.algorithms]
        try:
            chosen = select_challenge(values)
        except AuthError as e:
            log.warning("no usable challenge", extra={"fields": {"status": response.status, "error": str(e)}})
            return False
        creds = "Authorization" if response.status == 401 else "Proxy-Authorization"
        for key in [k for k in self._challenges if k[0] == method]:
            del self._challenges[key]
        self._challenges[(method, creds)] = (chosen, 0)
        return True

    def _authorize(self, request: Request) -> None:
        """Put credentials answering the last challenge to this method on `request` (next nonce-count)."""
        if self.user is None or self.password is None:
            return
        for (method, header), (challenge, nc) in list(self._challenges.items()):
            if method != request.method:
                continue
            nc += 1
            self._challenges[(method, header)] = (challenge, nc)
            value = digest_response(challenge, request.method, str(request.uri), self.user, self.password,
                                    secrets.token_hex(8), nc)
            request.headers.set(header, value)

    def digest_algorithm(self, method: str = "REGISTER") -> str | None:
        """The algorithm of the challenge last answered for `method` (SHA-256, MD5), None before any."""
        return next((_algorithm(c) for (m, _), (c, _) in self._challenges.items() if m == method), None)

    @staticmethod
    def _stale(response: Response) -> bool:
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        for v in response.headers.get_all(header):
            with contextlib.suppress(AuthError):
                if Challenge.parse(v).stale:
                    return True
        return False

    async def _transact(self, request: Request) -> Response:
        """Send a non-INVITE request and wait for its final response (408 made up when none came)."""
        fut: asyncio.Future[Response] = self.loop.create_future()

        def on_event(action: Action) -> None:
            if fut.done():
                return
            if isinstance(action, DeliverResponse) and action.response.status >= 200:
                fut.set_result(action.response)
            elif isinstance(action, TimedOut | TransportFailed):
                fut.set_result(make_response(request, 408, "Request Timeout (no answer)"))

        self.endpoint.to_server(request, on_event)
        return await fut  # Timer F ends every non-INVITE transaction within 64*T1

    # -- registration ---------------------------------------------------------------------------------

    async def register(self, user: str | None = None, password: str | None = None, *, expires: int = 300,
                       refresh: bool = False) -> RegisterOutcome:
        """REGISTER this user agent's contact (again, for a re-registration) for `expires` seconds.

        With `refresh`, the binding is renewed at half its granted lifetime until `close()`.
        """
        if user is not None:
            if user != self.user:
                self._challenges.clear()
            self.user = user
        if password is not None:
            self.password = password
        if self.user is None:
            raise ValueError("register needs a user")
        result = await self._register(expires)
        self.registration = result
        if refresh and result.ok and self._refresh is None:
            self._refresh = self.loop.create_task(self._keep_registered(expires))
        return result

    async def unregister(self) -> RegisterOutcome:
        """Remove this contact's binding (Expires: 0)."""
        if self._refresh is not None and self._refresh is not asyncio.current_task():
            self._refresh.cancel()
            self._refresh = None
        result = await self._register(0)
        self.registration = None
        return result

    async def _register(self, expires: int) -> RegisterOutcome:
        tries = 0
        while True:
            tries += 1
            request = self._register_request(expires)
            self._authorize(request)
            response = await self._transact(request)
            status = response.status
            if status in (401, 407) and tries < 3 and self.password is not None:
                # Retry once with the new challenge, and once more only when the nonce went stale.
                if (tries == 1 or self._stale(response)) and self._learn_challenge(response, "REGISTER"):
                    continue
            if status == 423 and tries < 3:
                asked = response.header_int("Min-Expires")
                if asked is not None and asked > expires:
                    expires = asked
                    continue
            granted = _granted_expires(response, self.contact(), expires) if 200 <= status < 300 else 0
            algorithm = self.digest_algorithm("REGISTER")
            log.debug("register", extra={"fields": {"user": self.user, "status": status, "expires": granted}})
            return RegisterOutcome(status, response.reason, granted, algorithm)

    def _register_request(self, expires: int) -> Request:
        self._reg_cseq += 1
        aor = URI("sip", self.domain, self.user)
        headers = Headers([
            ("From", str(NameAddr(aor, None, (("tag", self._reg_tag),)))),
            ("To", str(NameAddr(aor))),
            ("Call-ID", self._reg_call_id),
            ("CSeq", f"{self._reg_cseq} REGISTER"),
            ("Contact", str(self.contact())),
            ("Expires", str(expires)),
            ("User-Agent", USER_AGENT),
        ])
        return Request(headers, b"", "REGISTER", URI("sip", self.domain))

    async def _keep_registered(self, expires: int) -> None:
        while not self.closed:
            granted = self.registration.expires if self.registration is not None else expires
            await asyncio.sleep(max(1.0, granted / 2))
            result = await self._register(expires)
            self.registration = result
            if not result.ok:
                log.warning("re-registration failed", extra={"fields": {"user": self.user,
                                                                         "status": result.status}})


def _algorithm(challenge: str) -> str:
    try:
        return Challenge.parse(challenge).algorithm.upper()
    except AuthError:
        return ""


def _granted_expires(response: Response, contact: NameAddr, asked: int) -> int:
    """The lifetime the registrar gave our contact: its `expires` parameter, else the Expires header."""
    ours = contact.uri
    for value in response.headers.get_all("Contact"):
        try:
            c = NameAddr.parse(value)
        except ParseError:
            continue
        if c.uri is not None and ours is not None and (c.uri.user, c.uri.host, c.uri.port) == (
                ours.user, ours.host, ours.port):
            e = c.param("expires")
            if e is not None and e.isdigit():
                return int(e)
    try:
        header = response.header_int("Expires")
    except ParseError:
        header = None
    return header if header is not None else asked

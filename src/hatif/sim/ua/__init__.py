"""A small SIP user agent over UDP, for simulations and tests: register, place calls, answer calls.

It is built from Hatif's own sans-IO SIP modules (messages, digest, transactions, dialogs) standing on the
endpoint shell the SIP server stands on too (`hatif.sip.endpoint`: one UDP socket here, the transaction
table, one timer at its earliest deadline), and a few timers per call (answer delay, patience, talk time,
2xx retransmission). Every request goes to one server, which acts as the user agent's registrar and
outbound proxy; that is how phones use Hatif.

The package, bottom up: `shell.py` (the endpoint toward the server, the loop), `register.py` (digest and
REGISTER), `media.py` (RTP), `calls.py` (calls placed and received), `agent.py` (`UserAgent`: those put
together, opened and closed). Import from `hatif.sim.ua`.

What it does, per RFC 3261:

* `register()`: REGISTER with digest authentication (§22.4; SHA-256 or MD5 as the server offers, RFC
  8760 §2.4), `423` answered with the asked Min-Expires, optional refresh before expiry; `unregister()`.
  The last challenge is reused with a growing nonce-count (RFC 7616 §3.4), which saves a round trip
  per request and keeps the request count per address low under a server's flood limits.
* `place()` / `call()`: INVITE with a G.711 SDP offer, digest on 401/407, ACK of the 2xx (§13.2.2.4),
  CANCEL when the caller's patience runs out before the answer (§9.1), BYE after a talk time or wait
  for the other side's. With `wait_for_connect`, a call answered at SIP level (an IVR or a queue
  playing music) still counts as waiting until `OutgoingCall.connect()` says a person took it; patience
  running out then ends it with BYE.
* incoming INVITEs are answered by a policy (`Answer`): ring for a while then answer, hang up after a
  while or wait for BYE, or reject (486 Busy Here); 2xx retransmitted until the ACK (§13.3.1.4);
  CANCEL answered 200 and the INVITE 487 (§9.2).
* RTP, optional (`rtp=True`): 20 ms frames of silence or a tone to the far side of every answered call,
  so that media anchoring and recording see packets; packets received are counted.

Everything is bounded: calls at once (`max_calls`), transactions, each call's length (`max_duration`),
and `close()` ends the calls and unregisters within a few transaction timeouts at most.
"""

from ...sip.transport import Addr
from .agent import UserAgent
from .calls import Answer, AnswerPolicy, CallHook, CallOutcome, CallResult, IncomingCall, OutgoingCall, SipCallError
from .media import CODECS, FRAME, SAMPLES_PER_FRAME
from .register import RegisterOutcome
from .shell import USER_AGENT

__all__ = [
    "CODECS",
    "FRAME",
    "SAMPLES_PER_FRAME",
    "USER_AGENT",
    "Addr",
    "Answer",
    "AnswerPolicy",
    "CallHook",
    "CallOutcome",
    "CallResult",
    "IncomingCall",
    "OutgoingCall",
    "RegisterOutcome",
    "SipCallError",
    "UserAgent",
]

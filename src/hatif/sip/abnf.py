"""Regular expressions named after the ABNF rules of RFC 3261 §25.1.

Held here so that a reader can check the parser against the RFC rule by rule. Only rules the parser
really uses are spelled out.
"""

from __future__ import annotations

import re

# LWS = [*WSP CRLF] 1*WSP ; SWS = [LWS] (RFC 3261 §25.1). The message parser joins folded lines with a
# SP before header values are read, but CRLF is kept in the class so that a value from elsewhere reads too.
LWS = r"[ \t\r\n]+"
SWS = r"[ \t\r\n]*"
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
token = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN = re.compile(token)
# Method = INVITEm / ACKm / ... / extension-method ; extension-method = token
Method = re.compile(token)
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_Version = re.compile(r"SIP/\d+\.\d+")
# Status-Code = 3DIGIT
Status_Code = re.compile(r"\d{3}")
# header-name = token ; header line is header-name HCOLON value
header_name = re.compile(token)
# hostname = *( domainlabel "." ) toplabel [ "." ], IPv4address, IPv6reference
hostname = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?\.?"
IPv4address = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
IPv6reference = r"\[[0-9A-Fa-f:.]+\]"
host = rf"(?:{IPv6reference}|{IPv4address}|{hostname})"
HOST = re.compile(host)
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3261 §25.1, absoluteURI)
scheme = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# hostport = host [ ":" port ]
hostport = re.compile(rf"(?P<host>{host})(?::(?P<port>\d{{1,5}}))?")
# The characters allowed unescaped in the user part, RFC 3261 §25.1 user / user-unreserved.
USER_CHARS = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
# telephone-subscriber digits, RFC 3966 (kept loose: visual separators are allowed)
TEL_NUMBER = re.compile(r"[+0-9A-Fa-f*#().\-pPwW]+")
# via-parm = sent-protocol LWS sent-by *( SEMI via-params ), with
# sent-protocol = protocol-name SLASH protocol-version SLASH transport, SLASH = SWS "/" SWS and
# sent-by = host [ COLON port ], COLON = SWS ":" SWS (RFC 3261 §20.42, §25.1). The parser's fast path reads
# the usual `SIP/2.0/UDP host:port;...` without it; this rule is the fallback that allows all the LWS.
via_parm = re.compile(
    rf"(?P<protocol_name>{token}){SWS}/{SWS}(?P<protocol_version>{token}){SWS}/{SWS}(?P<transport>{token})"
    rf"{LWS}(?P<host>{host})(?:{SWS}:{SWS}(?P<port>\d{{1,5}}))?{SWS}(?P<params>;.*)?",
    re.DOTALL,
)
# rfc1123-date = wkday "," SP date1 SP time SP "GMT" (RFC 3261 §20.17: the only time zone is GMT)
rfc1123_date = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT"
)

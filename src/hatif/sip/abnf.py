"""Regular expressions named after the ABNF rules of RFC 3261 §25.1.

Held here so that a reader can check the parser against the RFC rule by rule. Only rules the parser
really uses are spelled out.
"""

from __future__ import annotations

import re

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
# hostport = host [ ":" port ]
hostport = re.compile(rf"(?P<host>{host})(?::(?P<port>\d{{1,5}}))?")
# The characters allowed unescaped in the user part, RFC 3261 §25.1 user / user-unreserved.
USER_CHARS = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
# telephone-subscriber digits, RFC 3966 (kept loose: visual separators are allowed)
TEL_NUMBER = re.compile(r"[+0-9A-Fa-f*#().\-pPwW]+")

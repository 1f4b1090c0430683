"""Card ids (OCPP idTags) masked in raw frames, for people who may audit a building but not learn its cards.

Pure: no Django, no I/O. A masked tag is ``****`` followed by its last four characters
(``04A1B2C3D4`` -> ``****C3D4``); a tag of fewer than eight characters, or one whose last four are
not plain letters and digits, becomes ``****`` alone, so that the part shown never gives most of a
card away. The mask has the same length whatever the tag, so neither is the tag's length shown.

What counts as a card id: the value of every key ``idTag`` or ``parentIdTag`` (any case), at any
depth: Authorize, StartTransaction, StopTransaction and its transactionData, RemoteStartTransaction,
ReserveNow, SendLocalList's localAuthorizationList, idTagInfo.parentIdTag in the answers. A number
or an object under such a key is masked too (a charger that sends the wrong type still sends the
card). Strings that carry JSON of their own (DataTransfer's ``data``) are masked inside. In a
CALLERROR, quoted values in the error details are masked: a schema error quotes the value it
refuses, which may be a card id that was too long.

A frame that is not valid JSON (the log keeps whatever arrived) is masked with a conservative regular
expression over the text: a quoted value, a bare value, or a value cut off by the end of the text,
after ``"idTag":`` or ``"parentIdTag":``, also when the quotes are escaped once (JSON inside a
string). It may mask more than a card; it is not meant to mask less.

A valid frame with nothing to mask comes back unchanged, byte for byte; one with a masked tag is
written again as compact JSON (the form chargers and the platform send).
"""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "****"
SHOWN = 4
# Fewer characters than this: nothing is shown (four of six would give most of the card away).
SHOW_FROM_LENGTH = 8
TAG_KEYS = frozenset({"idtag", "parentidtag"})
CALL_ERROR = 4

_PLAIN_TAIL = re.compile(r"[A-Za-z0-9]{4}")
# A tag key, its quotes escaped or not (the same number of backslashes before each), then its value:
# a string (ended by the same kind of quote, or by the end of the text), or a bare token.
_TAG_IN_TEXT = re.compile(
    r"""(?P<key>(?P<q>\\*)"(?:parent)?idtag(?P=q)"\s*:\s*)"""
    r"""(?:(?P=q)"(?P<text>(?:(?!(?P=q)")(?:[^\\]|\\.))*)(?:(?P=q)"|\\?\Z)"""
    r"""|(?P<bare>(?!(?:null|true|false)\b)[^\s,:}\]"\\]+))""",
    re.IGNORECASE | re.DOTALL,
)
_CALL_ERROR_START = re.compile(rf"\s*\[\s*{CALL_ERROR}\b")
# A quoted literal in an error's details, as Python's repr or JSON writes it: 'x' or "x".
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.DOTALL)


def mask_id_tag(tag: str) -> str:
    """``****`` and the last four characters of ``tag`` when it is long enough and they are plain."""
    tail = tag[-SHOWN:]
    if len(tag) >= SHOW_FROM_LENGTH and _PLAIN_TAIL.fullmatch(tail):
        return MASK + tail
    return MASK


def mask_frame(raw: str) -> str:
    """``raw`` (an OCPP-J frame as logged, valid JSON or not) with every card id masked."""
    if "idtag" not in raw.lower() and "\\u" not in raw and not _CALL_ERROR_START.match(raw):
        return raw  # the common case: a Heartbeat or MeterValues has no card in it (nor a key spelt in escapes)
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return mask_text(raw)
    masked = _mask_value(frame)
    if isinstance(masked, list) and len(masked) >= 5 and masked[0] == CALL_ERROR:
        masked[4] = _mask_quoted(masked[4])
    if masked == frame:
        return raw
    return _dumps(masked)


def mask_text(text: str) -> str:
    """Mask the values after idTag / parentIdTag keys in any text, JSON or not."""
    return _TAG_IN_TEXT.sub(_masked_match, text)


def _masked_match(match: re.Match[str]) -> str:
    quote = match.group("q") + '"'
    if match.group("bare") is not None:
        return match.group("key") + quote + MASK + quote
    return match.group("key") + quote + mask_id_tag(match.group("text")) + quote


def _mask_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _mask_all(item) if key.lower() in TAG_KEYS else _mask_value(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_value(item) for item in value]
    if isinstance(value, str) and "idtag" in value.lower():
        return _mask_embedded(value)
    return value


def _mask_all(value: Any) -> Any:
    """Everything under a tag key: strings and numbers masked, containers masked throughout."""
    if isinstance(value, str):
        return mask_id_tag(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return mask_id_tag(str(value))
    if isinstance(value, dict):
        return {key: _mask_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    return MASK


def _mask_embedded(text: str) -> str:
    """A string that mentions a tag key: JSON inside it is masked like a frame, anything else by the regex."""
    try:
        inner = json.loads(text)
    except (ValueError, RecursionError):
        return mask_text(text)
    if not isinstance(inner, dict | list):
        return mask_text(text)
    masked = _mask_value(inner)
    return text if masked == inner else _dumps(masked)


def _mask_quoted(details: Any) -> Any:
    if isinstance(details, dict):
        return {key: _mask_quoted(item) for key, item in details.items()}
    if isinstance(details, list):
        return [_mask_quoted(item) for item in details]
    if isinstance(details, str):
        return _QUOTED.sub(lambda m: m.group(0)[0] + mask_id_tag(m.group(0)[1:-1]) + m.group(0)[0], details)
    return details


def _dumps(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # An escaped unpaired surrogate in the frame: keep it escaped, or the export could not encode it.
        return json.dumps(value, separators=(",", ":"))
    return text

"""Hostile input, refused where it enters: request bodies the database could not store, and
callback URLs that would make the platform POST to its own network.

Callback URLs are checked twice when WEBHOOK_ALLOW_PRIVATE_ADDRESSES is off (production): when a
bot or a coordinator sets one (a 400 naming the field), and again before every webhook attempt,
after resolving the host afresh, so a name that later resolves to an internal address (DNS
rebinding) is refused too. The attempt then connects to the very address that was checked.
"""

import ipaddress
import json
import socket
import unicodedata
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# The contract's deepest body (an escalation's transcript entry) is three levels deep.
MAX_JSON_DEPTH = 20

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeJSON(ValueError):
    """Valid JSON that the platform refuses: see check_json."""


def check_json(value, *, depth: int = 1) -> None:
    """Raise UnsafeJSON for a decoded JSON value nested deeper than MAX_JSON_DEPTH or holding a
    lone UTF-16 surrogate (`"\\ud800"` is valid JSON, but no UTF-8 text, so the database
    cannot store it)."""
    if depth > MAX_JSON_DEPTH:
        raise UnsafeJSON(f"nested deeper than {MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            check_json(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth=depth + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeJSON("a string holds a lone UTF-16 surrogate.") from exc


def decode_json(text: str):
    """json.loads, refusing what check_json refuses; ValueError for anything not taken. Deep
    enough nesting exhausts the decoder's recursion before check_json sees it."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise UnsafeJSON(f"nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    check_json(value)
    return value


class JSONBodyParser(JSONParser):
    """DRF's JSON parser, also refusing with a 400 what it would let through to a 500 (see
    check_json). NUL characters are refused by every DRF CharField, naming the field."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
            ) from exc
        try:
            check_json(data)
        except UnsafeJSON as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        return data


def validate_no_control_characters(value: str) -> None:
    """For identifiers and names, which end up in logs and admin lists: no control characters
    (free text may hold line breaks and tabs; the database refuses only NUL)."""
    if any(unicodedata.category(character) == "Cc" for character in value):
        raise ValidationError("Control characters are not allowed.", code="control_characters")


# --- Callback URLs ----------------------------------------------------------------------------


class RefusedAddress(Exception):
    """The callback host is, or resolves to, an address webhooks must not be sent to."""


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_public_address(address: IPAddress) -> bool:
    """False for private, loopback, link-local, multicast, reserved, unspecified and other
    special-purpose addresses (NAT64 addresses too: ipaddress counts them reserved). An IPv6
    address that carries an IPv4 address (IPv4-mapped, 6to4) is public only if that IPv4 address
    is too."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address.sixtofour is not None and not is_public_address(address.sixtofour):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself). Raises
    socket.gaierror when the name does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # The scope of a link-local IPv6 address ("fe80::1%eth0") is not part of the address.
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))


def check_host_name(host: str) -> None:
    """Raise RefusedAddress for a name that means this machine whatever DNS says (RFC 6761:
    `localhost` and every name under it), unless private addresses are allowed."""
    name = host.lower().rstrip(".")
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES and (
        name == "localhost" or name.endswith(".localhost")
    ):
        raise RefusedAddress(f"{host} is a loopback host name.")


def check_addresses(host: str, addresses: list[IPAddress]) -> None:
    """Raise RefusedAddress unless the host's name and every address it resolves to are public
    (or private addresses are allowed by WEBHOOK_ALLOW_PRIVATE_ADDRESSES)."""
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return
    check_host_name(host)
    refused = [str(address) for address in addresses if not is_public_address(address)]
    if refused:
        raise RefusedAddress(
            f"{host} is or resolves to a non-public address ({', '.join(refused)})."
        )


def url_port(parts) -> int:
    """The URL's port, or its scheme's default. Raises ValueError for a port out of range."""
    return parts.port or (443 if parts.scheme == "https" else 80)


def validate_callback_url(url: str) -> None:
    """Django validator for a callback URL: `https://` (plain `http://` only to a loopback
    host, for development), and, when private addresses are not allowed, a host that is and
    resolves to public addresses only. A host that does not resolve now is let through: DNS
    may be failing for a moment, and every delivery attempt checks again before it connects.
    """
    if not url:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))):
        raise ValidationError(
            "Must be an https:// URL (plain http:// only to a loopback host).", code="scheme"
        )
    try:
        port = url_port(parts)
    except ValueError as exc:
        raise ValidationError("The port is not valid.", code="port") from exc
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return
    try:
        check_host_name(host)
        try:
            addresses = resolve_host(host, port)
        except (socket.gaierror, UnicodeError):
            addresses = []
        check_addresses(host, addresses)
    except RefusedAddress as exc:
        raise ValidationError(
            f"Must reach a public address: {exc}", code="private_address"
        ) from exc

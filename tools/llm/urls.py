"""Endpoint URLs as they may be stored and shown, and whether one is on this machine. Light on purpose: the
command line's configs use it before anything heavy loads."""

from ipaddress import ip_address
from urllib.parse import urlparse


def public_url(url: str) -> str:
    """`url` without what may be a credential (user:password@, a ?query or #fragment), to store or show."""
    if not url:
        return url
    parts = urlparse(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False

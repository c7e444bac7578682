"""Who may reach the review app: loopback freely, any other address only with a token (no web framework here)."""

from __future__ import annotations

import ipaddress

from hootwatch.edge.core.errors import ConfigError


def check_host(host: str, token: str | None) -> None:
    """A bind other than loopback needs a token (anyone on the network could otherwise label and listen)."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host} opens the review app to the network without a token",
                          "leave --host unset (127.0.0.1); `hootwatch review --host H` makes a token and prints the address with it")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

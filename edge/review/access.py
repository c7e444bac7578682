"""Who may reach the review app (no web framework here): loopback freely, any other address only with a token, and
only under a name of this server (the Host allow-list against DNS rebinding; review.guard applies it)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from hootwatch.edge.core.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
EVERY_ADDRESS = ("0.0.0.0", "::", "")


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


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a request's Host may give: loopback, the bound address, `extra` (--allow-host: a proxy's name)
    and, bound to every address, this machine's names and addresses."""
    names = set(LOOPBACK_NAMES) | {h.strip().lower() for h in extra if h.strip()}
    bind = bind.strip("[]").lower()
    names |= machine_names() if bind in EVERY_ADDRESS else {bind}
    return frozenset(names)


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """Whether a Host header ("name", "name:port", "[v6]:port") names this server. An address literal always
    does: a DNS-rebinding page can only send its own domain name as Host, never an address."""
    name = host_name(host_header)
    if name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name of a Host header without its port, lower case ("[::1]:8765" -> "::1")."""
    h = host_header.strip().lower()
    if h.startswith("["):  # "[addr]" or "[addr]:port"; anything else after "]" is no address of ours
        end = h.find("]")
        rest = h[end + 1:]
        return h[1:end] if end > 0 and (rest == "" or (rest[:1] == ":" and rest[1:].isdigit())) else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def machine_names() -> set[str]:
    """This machine's host name (and its .local mDNS name), fully qualified name and addresses."""
    name = socket.gethostname()
    names = {name, f"{name}.local", socket.getfqdn()}
    try:
        names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except OSError:
        pass
    lan = lan_address()
    if lan:
        names.add(lan)
    return {n.lower() for n in names if n}


def lan_address(ipv4_only: bool = False) -> str | None:
    """The address this machine reaches the network from: the source a UDP socket "connected" towards a
    documentation address would use (nothing is sent). None without a route. `ipv4_only`: for an IPv4 bind."""
    probes = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))
    for family, probe in probes[:1] if ipv4_only else probes:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addr = s.getsockname()[0]
        except OSError:
            continue
        if not ipaddress.ip_address(addr).is_loopback:
            return addr
    return None


def shown_address(bind: str) -> str:
    """The address to print for a server bound to `bind`: bound to every address, this machine's network
    address (its host name where it has none), which a browser on another computer can open."""
    if bind.strip("[]") in EVERY_ADDRESS:
        return lan_address(ipv4_only=bind == "0.0.0.0") or socket.gethostname()
    return bind


def url_host(host: str) -> str:
    """A host as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host

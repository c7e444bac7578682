"""The review app's web server: `serve` builds a uvicorn server over an output folder, run in the foreground by
`hootwatch review` or in a thread of its own by the field daemon (`ServerThread`)."""

from __future__ import annotations

import threading

from hootwatch.edge.core.errors import ConfigError, MissingExtraError


def serve(out, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, bundle=None,
          max_upload_mb: float = 200.0, reviewer: str = "", log_level: str = "warning", allow_hosts=(),
          max_analyze_s: float = 7200.0):
    """The app over `out` in a uvicorn server, not yet running (the CLI runs it in the foreground until
    interrupted, the daemon in a ServerThread). It answers requests that name it by loopback, `host`, the
    `allow_hosts` (a proxy's name) or, bound to every address, this machine's names (review.access)."""
    try:
        import uvicorn

        from hootwatch.edge.review.app import create_app
    except ImportError as exc:
        raise MissingExtraError("review", exc.name or "fastapi") from None
    from hootwatch.edge.review.access import allowed_hosts, check_host
    check_host(host, token)
    if port < 0 or port > 65535:
        raise ConfigError(f"--port {port} is not a port number", "pass e.g. --port 8765")
    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-analyze-s", max_analyze_s)):
        if not 0 < value < float("inf"):
            raise ConfigError(f"{name} {value:g} is not a positive number", f"pass e.g. {name} 200")
    app = create_app(out, token=token, bundle=bundle, max_upload_mb=max_upload_mb, reviewer=reviewer,
                     allow_hosts=allowed_hosts(host, allow_hosts), max_analyze_s=max_analyze_s)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    server = uvicorn.Server(config)
    return server


class ServerThread:
    """A server from `serve` run in a daemon thread named `name` until `stop()`."""

    def __init__(self, server, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

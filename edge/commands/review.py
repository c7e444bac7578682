"""`hootwatch review OUTDIR [--port N] [--host H] [--no-browser]`: review detections in the browser and label them.

Serves the review app (and its JSON API, see docs/review-loop.md) on 127.0.0.1 by default and opens the browser.
A --host other than loopback prints a token, as Jupyter does; every request must carry it. The app answers only
requests that name it by loopback, its --host, this machine's names (bound to 0.0.0.0) or an --allow-host (a
proxy's name). `--model BUNDLE` enables `POST /api/analyze` (upload a recording, get its detections).
"""

from __future__ import annotations

import argparse
import secrets

from hootwatch.edge.review.server import serve


def register(subparsers) -> None:
    p = subparsers.add_parser("review", help="review and label detections in the browser (local web app)",
                              description=__doc__.splitlines()[0],
                              epilog="example: hootwatch review results/   (then press y / n / u / s, ← to undo)")
    p.add_argument("out", metavar="OUTDIR", help="the scan's output folder (holds detections.sqlite)")
    p.add_argument("--port", type=int, default=8765, metavar="N", help="port (default 8765; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to listen on (default 127.0.0.1: this computer only; another needs the token)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--model", default=None, metavar="BUNDLE", help="bundle for POST /api/analyze")
    p.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest upload (default 200)")
    p.add_argument("--max-analyze-s", type=float, default=7200.0, metavar="S",
                   help="most audio one upload may hold, in seconds (default 7200): the CPU a request may take")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this host name (a reverse proxy's, e.g. review.example.org); "
                        "repeat for more")
    p.add_argument("--reviewer", default="", metavar="NAME", help="name recorded with each label")
    p.add_argument("--token", default=None, help=argparse.SUPPRESS)  # tests and the daemon pass their own
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hootwatch.edge.review.access import is_loopback, shown_address, url_host

    token = args.token if args.token is not None else (None if is_loopback(args.host) else secrets.token_urlsafe(24))
    server = serve(args.out, args.host, args.port, token, args.model, args.max_upload_mb, args.reviewer,
                   allow_hosts=args.allow_host, max_analyze_s=args.max_analyze_s)
    shown = url_host(shown_address(args.host))  # bound to every address: this machine's, for other computers

    def announce():  # once the socket is bound, so a port of 0 shows the real one
        sock = server.servers[0].sockets[0] if server.servers else None
        port = sock.getsockname()[1] if sock else args.port
        url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
        print(f"hootwatch review: {url}  (Ctrl-C to stop)", flush=True)
        if not args.no_browser:
            import webbrowser
            webbrowser.open(url)

    import asyncio

    async def main():
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            announce()
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0

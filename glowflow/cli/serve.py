"""``glowflow serve``: the latent explorer in the browser (the ``glowflow[serve]`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket

from glowflow.cli.common import UsageError, add_data_options, info, load_data_for, positive_int
from glowflow.cli.models import CHECKPOINT_HELP
from glowflow.distributed import resolve_device
from glowflow.explorer.checks import FRAMINGS, RUNTIMES
from glowflow.hub.load import load_model
from glowflow.progress import progress_bar

SERVE_EXTRA = "pip install 'glowflow[serve]'"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="explore a model in the browser: edit, mix and sample faces",
        description="Start a local web app to edit images along attribute directions, mix two "
        "images level by level and draw samples. With no options it serves the bundled "
        "celeba64 model and its gallery of held-out faces.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", default="celeba64", help=CHECKPOINT_HELP)
    p.add_argument("--dataset", metavar="SPEC",
                   help="labelled images: the gallery (its first images) and, for a model that "
                        "ships none, the attribute and class directions")  # fmt: skip
    p.add_argument("--gallery-size", type=positive_int, default=24,
                   help="gallery images taken from --dataset")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback exposes the app")  # fmt: skip
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the server also answers to (repeat for several; '*' "
                        "for any); it always answers to localhost, 127.0.0.1, ::1 and "
                        "--host")  # fmt: skip
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="an origin (scheme://host:port) whose pages may upload besides the "
                        "explorer's own page (repeat for several)")  # fmt: skip
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token",
                       help="the secret every request must carry (default: a random one when "
                            "--host is not loopback, none on loopback)")  # fmt: skip
    token.add_argument("--no-token", action="store_true",
                       help="let anyone who reaches --host use the explorer without a "
                            "token")  # fmt: skip
    p.add_argument("--framing", choices=FRAMINGS, default="auto",
                   help="how uploads are cropped: around a detected face, or the centre square "
                        "(auto: faces for a model with CelebA's attributes)")  # fmt: skip
    p.add_argument("--limit", type=positive_int,
                   help="use only the first N images of --dataset for the directions")  # fmt: skip
    p.add_argument("--max-upload-mb", type=positive_int, default=10)
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="what runs the model: PyTorch, or ONNX Runtime on its exported graphs "
                        "(the glowflow[onnx] extra; faster edits on a CPU; "
                        "exported once into the cache). auto: ONNX Runtime where the extra "
                        "is installed and the graphs exist already")  # fmt: skip
    add_data_options(p)


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"--port must lie in 1..65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host"
        ) from None


def _listening_names(host: str) -> list[str]:
    """The host names a browser may use to reach a server on ``host``: ``host`` itself, or for
    a wildcard address this machine's names and addresses."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    try:  # the address other machines reach this one by (a UDP "connect" sends nothing)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            names.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(names)


def _token(args: argparse.Namespace) -> str | None:
    if args.no_token:
        return None
    if args.token is not None:
        if len(args.token) < 16:
            raise UsageError(
                "--token must be at least 16 characters; leave it out for a random one"
            )
        return args.token
    return None if _is_loopback(args.host) else secrets.token_urlsafe(24)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from glowflow.explorer.assemble import build_explorer
        from glowflow.explorer.guard import Policy
        from glowflow.explorer.runtime import check_runtime
        from glowflow.explorer.server import create_app
    except ImportError as e:
        raise UsageError(f"glowflow serve needs {e.name}: {SERVE_EXTRA}") from None
    _check_port(args.host, args.port)
    check_runtime(args.runtime)
    token = _token(args)
    loaded = load_model(args.checkpoint, resolve_device(args.device))
    data = load_data_for(args, loaded.model, limit=args.limit) if args.dataset else None
    explorer = build_explorer(
        loaded, data, args.dataset, image_size=args.image_size, pad=args.pad, limit=args.limit,
        gallery_size=args.gallery_size, framing=args.framing,
        progress=progress_bar("directions"), runtime=args.runtime, say=info,
    )  # fmt: skip
    policy = Policy.make([*_listening_names(args.host), *args.allow_host], args.allow_origin,
                         token, args.port)  # fmt: skip
    if "*" in args.allow_host and token is None:
        info("warning: --allow-host '*' without a token: a web page whose host name comes to "
             "point at this machine (DNS rebinding) can use the explorer")  # fmt: skip
    app = create_app(explorer, args.max_upload_mb * 2**20, policy)
    if not _is_loopback(args.host):
        who = "anyone with the address below" if token else "anyone who can reach this machine"
        info(f"warning: listening on {args.host}: {who} can use the explorer; leave out --host "
             f"to keep it to this computer")  # fmt: skip
    shown = f"[{args.host}]" if ":" in args.host else args.host
    address = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    engine = {"torch": "PyTorch", "onnx": "ONNX Runtime"}[explorer.runtime.name]
    info(f"serving {args.checkpoint} with {engine} at {address} (Ctrl-C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

"""``glowflow serve``: the latent explorer in the browser (the ``glowflow[serve]`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import socket

from glowflow.cli.common import UsageError, add_data_options, info, load_data_for, positive_int
from glowflow.cli.models import CHECKPOINT_HELP
from glowflow.distributed import resolve_device
from glowflow.explorer.checks import FRAMINGS
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
    p.add_argument("--framing", choices=FRAMINGS, default="auto",
                   help="how uploads are cropped: around a detected face, or the centre square "
                        "(auto: faces for a model with CelebA's attributes)")  # fmt: skip
    p.add_argument("--limit", type=positive_int,
                   help="use only the first N images of --dataset for the directions")  # fmt: skip
    p.add_argument("--max-upload-mb", type=positive_int, default=10)
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
        from glowflow.explorer.server import create_app
    except ImportError as e:
        raise UsageError(f"glowflow serve needs {e.name}: {SERVE_EXTRA}") from None
    _check_port(args.host, args.port)
    loaded = load_model(args.checkpoint, resolve_device(args.device))
    data = load_data_for(args, loaded.model, limit=args.limit) if args.dataset else None
    explorer = build_explorer(
        loaded, data, args.dataset, image_size=args.image_size, pad=args.pad, limit=args.limit,
        gallery_size=args.gallery_size, framing=args.framing,
        progress=progress_bar("directions"),
    )  # fmt: skip
    app = create_app(explorer, args.max_upload_mb * 2**20)
    if not _is_loopback(args.host):
        info(f"warning: listening on {args.host}: anyone who can reach this machine can use the "
             f"explorer; leave out --host to keep it to this computer")  # fmt: skip
    shown = f"[{args.host}]" if ":" in args.host else args.host
    info(f"serving {args.checkpoint} at http://{shown}:{args.port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

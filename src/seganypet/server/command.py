"""``seganypet serve``: the command line of the HTTP server."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
from pathlib import Path

from seganypet.cli_options import (
    add_dicomweb_options,
    add_log_level_option,
    add_model_option,
    add_threads_option,
    dicomweb_settings,
    port_number,
    whole_number_at_least,
)
from seganypet.errors import InputError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_token(host: str, token: str) -> str:
    """The token to require: ``auto`` makes one, except on a non-loopback address (refused)."""
    if token == "auto":
        if not is_loopback(host):
            raise InputError(
                f"--host {host} is reachable from other machines: give an explicit --token "
                "(or SEGANYPET_TOKEN) that you share with them, or bind 127.0.0.1"
            )
        return secrets.token_hex(24)
    if len(token) < 8:
        raise InputError("--token must be at least 8 characters (or 'auto')")
    return token


def server_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


def refuse_a_taken_address(host: str, port: int) -> None:
    """Bind once before loading the model, so that a port in use or an unknown host is one line
    now rather than a log message from the server later."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(
            f"--host {host}: not an address of this machine ({exc.strerror})"
        ) from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host} port {port} ({exc.strerror}); choose another --port, "
                "or stop the program that holds it"
            ) from None


def cmd_serve(args: argparse.Namespace) -> None:
    token = choose_token(args.host, args.token)
    data = Path(args.data)
    if not data.is_dir():
        raise InputError(f"--data {data}: no such folder")
    if not 0 < args.max_upload_mb:
        raise InputError("--max-upload-mb must be positive")

    refuse_a_taken_address(args.host, args.port)
    dicomweb = dicomweb_settings(args)
    if dicomweb is not None:
        from seganypet.io.dicomweb import DicomwebServer

        found = len(DicomwebServer(dicomweb).pet_series())  # refused now, in one line
        print(f"seganypet serve: {found} PET series on {dicomweb.url}", flush=True)

    import uvicorn

    from seganypet.model import configure_threads, load_model
    from seganypet.server.app import create_app

    configure_threads(args.threads)
    model = load_model(args.model)
    app = create_app(
        data,
        model,
        token,
        work_dir=args.work,
        max_upload_bytes=int(args.max_upload_mb * 1_000_000),
        max_open_studies=args.max_studies,
        dicomweb=dicomweb,
    )
    url = server_url(args.host, args.port)
    print(
        f"seganypet serve: studies under {data.resolve()}, work folder {app.state.work_dir}\n"
        f"    To open the viewer, copy and paste this URL into a browser:\n"
        f"        {url}?token={token}\n"
        f"    API clients send the header 'Authorization: Bearer {token}'; schema at "
        f"{url}api/openapi.json",
        flush=True,
    )
    uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level=args.log_level)


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    help = (
        "Serve the interactive session over HTTP (browser viewer and API) on 127.0.0.1, "
        "with a token; every interaction is journaled so a crash loses no work."
    )
    p = subparsers.add_parser("serve", help=help, description=help)
    p.set_defaults(func=cmd_serve)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    p.add_argument(
        "--token",
        default=os.environ.get("SEGANYPET_TOKEN", "auto"),
        help="the token every request must carry; 'auto' (default) generates one and prints it "
        "(default: SEGANYPET_TOKEN if set). A non-loopback --host needs an explicit token",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("."),
        help="folder of studies (NIfTI files, DICOM folders); nothing outside it is served "
        "(default: the current folder)",
    )
    add_model_option(p)
    p.add_argument(
        "--work",
        type=Path,
        help="folder for journals, uploads and saved masks "
        "(default: ~/.local/state/seganypet/serve/<data folder name>-<hash>)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=2048,
        help="largest accepted upload in MB (default 2048)",
    )
    p.add_argument(
        "--max-studies",
        type=whole_number_at_least(1),
        default=4,
        help="studies held in memory at once (default 4); the least recently used is let go "
        "and reopens from its journal when it is next asked for",
    )
    add_threads_option(p)
    add_log_level_option(p)
    add_dicomweb_options(
        p,
        "its PET series are listed beside --data's studies (QIDO-RS), fetched when opened "
        "(WADO-RS), and a saved DICOM SEG is also stored there (STOW-RS)",
    )
    return p

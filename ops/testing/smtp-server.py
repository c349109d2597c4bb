#!/usr/bin/env python3
"""An SMTP server for Topsail's notification tests (aiosmtpd): STARTTLS required, AUTH PLAIN
with one user, and every accepted message written to a directory as <n>.json with its envelope,
whether it came over TLS and authenticated, and its text. Prints "ready" when it listens."""
import argparse
import json
import pathlib
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--user", required=True)
parser.add_argument("--password", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)


class Handler:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        Handler.count += 1
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "message": envelope.content.decode("utf-8", "replace"),
        }
        (out / f"{Handler.count}.json").write_text(json.dumps(record))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user and auth_data.password.decode() == args.password
    return AuthResult(success=ok)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(args.cert, args.key)
controller = Controller(
    Handler(), hostname="127.0.0.1", port=args.port, tls_context=context, require_starttls=True,
    authenticator=authenticate, auth_required=True)
controller.start()
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
controller.stop()

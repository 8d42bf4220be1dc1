"""A loopback SMTP server for the notification tests (aiosmtpd, from PyPI).

Usage: smtp_sink.py CERT KEY OUTDIR USER PASSWORD

STARTTLS is required before anything else, and AUTH (over TLS only) must name USER and
PASSWORD. Each message is written to OUTDIR/N.json with what the session looked like (TLS,
the authenticated login), the envelope and the raw message. The port it listens on (on
127.0.0.1, picked by the kernel) is printed as the first line of stdout.
"""

import asyncio
import json
import pathlib
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

cert, key, outdir, user, password = sys.argv[1:6]
out = pathlib.Path(outdir)
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)


class Sink:
    async def handle_DATA(self, server, session, envelope):
        n = len(list(out.glob("*.json")))
        record = {
            "tls": session.ssl is not None,
            "login": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        tmp = out / f"{n}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.rename(out / f"{n}.json")
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, auth_data=auth_data if ok else None)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Sink(),
            hostname="selfheal-test-smtp",
            tls_context=tls,
            require_starttls=True,
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=True,
        ),
        "127.0.0.1",
        0,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())

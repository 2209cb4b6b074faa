"""Real-looking upstream mail for the bridge tests: LISTSERV posts and MAST event notifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

LIST_ID = "NIRSPEC_REFFILES_UPD.LISTSERV.STSCI.EDU"
LIST_ADDR = "NIRSPEC_REFFILES_UPD@LISTSERV.STSCI.EDU"
WHEN = datetime(2019, 7, 30, 16, 0, tzinfo=UTC)

ANNOUNCE = (
    "Dear NIRSpec users,\n\n"
    "As per Jira issues CRDS-287, REDCAT-52 and JWSTDMSSDPDR-5245, the rmaps for the NIRSpec\n"
    "reference types DARK, READNOISE and SUPERBIAS were updated (jwst_nirspec_dark_0029.rmap)\n"
    "and delivered in context jwst_0541.pmap. New file: jwst_nirspec_dark_0022.fits.\n\n"
    "Regards,\nReDCaT\n"
)


def _listserv_headers(msg: EmailMessage, subject: str, message_id: str) -> None:
    msg["From"] = "ReDCaT Team <redcat@stsci.edu>"
    msg["Sender"] = f"NIRSpec reference file updates <{LIST_ADDR}>"
    msg["To"] = LIST_ADDR
    msg["Reply-To"] = "ReDCaT Team <redcat@stsci.edu>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(WHEN)
    msg["Message-ID"] = message_id
    msg["List-Id"] = f"NIRSpec reference file updates <{LIST_ID}>"
    msg["Precedence"] = "list"


def plain_post(body: str = ANNOUNCE, *, subject: str = "NIRSpec reference files delivered: jwst_0541.pmap",
               message_id: str = "<post-1@listserv.stsci.edu>", cte: str = "quoted-printable",
               charset: str = "utf-8") -> bytes:
    msg = EmailMessage()
    _listserv_headers(msg, subject, message_id)
    msg.set_content(body, charset=charset, cte=cte)
    return bytes(msg)


def multipart_post(*, message_id: str = "<post-2@listserv.stsci.edu>") -> bytes:
    msg = EmailMessage()
    _listserv_headers(msg, "Re: NIRSpec darks", message_id)
    msg.set_content(ANNOUNCE, cte="base64")
    msg.add_alternative(f"<html><body><p>{ANNOUNCE}</p></body></html>", subtype="html")
    return bytes(msg)


def html_only_post(*, message_id: str = "<post-3@listserv.stsci.edu>") -> bytes:
    msg = EmailMessage()
    _listserv_headers(msg, "HTML delivery notice", message_id)
    html = ("<html><body><h1>Delivery</h1><table><tr><th>file</th><th>type</th></tr>"
            "<tr><td>jwst_nirspec_dark_0022.fits</td><td>DARK</td></tr></table>"
            "<p>Context jwst_0541.pmap &amp; REDCAT-52</p></body></html>")
    msg.set_content(html, subtype="html", cte="quoted-printable")
    return bytes(msg)


def confirmation_request(cookie: str = "4A1B2C3D") -> bytes:
    msg = EmailMessage()
    msg["From"] = "L-Soft list server at LISTSERV.STSCI.EDU (16.5) <LISTSERV@LISTSERV.STSCI.EDU>"
    msg["To"] = "upstream+nirspec@lists.example.org"
    msg["Subject"] = f"Command confirmation request ({cookie})"
    msg["Date"] = format_datetime(WHEN)
    msg["Message-ID"] = f"<LISTSERV%{cookie}@LISTSERV.STSCI.EDU>"
    msg.set_content(
        "Your command:\n\n    SUBSCRIBE NIRSPEC_REFFILES_UPD crdswatch\n\n"
        "requires confirmation. To confirm the execution of your command, simply point your\n"
        "browser to the following URL:\n\n   https://listserv.example.invalid/scripts/wa.exe?OK=4A1B2C3D\n\n"
        "Alternatively, if you have no WWW access, please reply to the present message and type\n"
        '"ok" (without the quotes) as the text of your message.\n'
    )
    return bytes(msg)


def mast_mail(events: list[dict[str, Any]], *, message_id: str = "<mast-1@mast.stsci.edu>") -> bytes:
    msg = EmailMessage()
    msg["From"] = "MAST Notifications <archive@stsci.edu>"
    msg["To"] = "upstream+mast@lists.example.org"
    msg["Subject"] = "MAST: new data for your program subscriptions"
    msg["Date"] = format_datetime(WHEN)
    msg["Message-ID"] = message_id
    msg.set_content("Attached is a list of events for the programs you subscribe to.\n")
    msg.add_attachment(json.dumps(events).encode(), maintype="application", subtype="json",
                       filename="events.json")
    return bytes(msg)


def mast_events(program: str = "01234", count: int = 37, kind: str = "Reprocessed",
                archived: str = "2019-08-02T10:00:00") -> list[dict[str, Any]]:
    return [
        {"event_id": f"ev-{program}-{kind}-{n}", "mission": "JWST", "program": program,
         "fileset": f"jw{program}001001_0210{n % 3}_00001", "filename": f"jw{program}001001_{n:05d}_rate.fits",
         "event_type": kind, "archived_date": archived}
        for n in range(count)
    ]

"""Size and width of real notices as sent, against each channel's budget, and render time.

For the largest JWST and HST activations and a digest of the whole bundled JWST history (an
"everything" subscriber): the full text (what the archive page holds), the e-mail as sent
(whole MIME message, text part lines and widest line), and the Slack posts.

Run: .venv/bin/python bench/notice_sizes.py
"""

from __future__ import annotations

import itertools
import json
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.bundled import extract_bundled
from crdswatch.model import Activation, ActivationDiff, Interest, Notice
from crdswatch.render import email_message, slack_payloads, text_body
from crdswatch.render.budget import EMAIL_BUDGET, SLACK_BUDGET

HST = Path(__file__).parents[1] / "tests" / "data" / "hst-golden.tar.xz"
PUBLIC = "https://crdswatch.example.org"


def _notice(diffs: tuple[ActivationDiff, ...], digest: str = "immediate") -> Notice:
    return Notice("everything", diffs, "everything", interest=Interest(), public_url=PUBLIC, digest=digest)


def _report(label: str, notice: Notice) -> None:
    start = time.perf_counter()
    msg = email_message(notice, sender="a@example.org", to=["b@example.org"], message_id="m@example.org",
                        date=datetime(2024, 1, 1, tzinfo=UTC), list_id="l.example.org")
    mail_s = time.perf_counter() - start
    raw = msg.as_bytes()
    part = msg.get_body(preferencelist=("plain",))
    sent = part.get_content().splitlines() if part is not None else []
    start = time.perf_counter()
    posts = slack_payloads(notice)
    slack_s = time.perf_counter() - start
    full = text_body(notice).splitlines()
    print(f"{label}")
    print(f"  full text   {len(full):6d} lines {sum(len(x) + 1 for x in full) / 1000:8.1f} KB  widest {max(map(len, full))}")
    print(f"  e-mail      {len(sent):6d} lines {len(raw) / 1000:8.1f} KB  widest {max(map(len, sent))}"
          f"  (budget {EMAIL_BUDGET.words()}; {len(raw) / EMAIL_BUDGET.max_bytes:.2f} of it; {mail_s:.2f} s)")  # type: ignore[operator]
    size = len(json.dumps(posts, ensure_ascii=False).encode())
    print(f"  Slack       {len(posts):6d} posts {size / 1000:8.1f} KB  blocks {sum(len(p['blocks']) for p in posts)}"
          f"  (budget {SLACK_BUDGET.words()}; {slack_s:.2f} s)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        jwst = extract_bundled(Path(tmp))
        library = MappingLibrary.from_dir(jwst / "mappings")
        history = load_server_config(jwst / "config" / "server_config").activations()
        diffs = tuple(ActivationDiff("jwst", "https://jwst-crds.stsci.edu", "latest", b, a.context,
                                     diff_contexts(a.context, b.context, library).changes)
                      for a, b in itertools.pairwise(history))
        largest = max(diffs, key=lambda d: len(d.changes))
        _report(f"JWST {largest.activation.context} ({len(largest.changes)} changes, the largest)", _notice((largest,)))
        _report(f"JWST digest of the whole bundled history ({len(diffs)} activations)", _notice(diffs, "daily"))
        with tarfile.open(HST, "r:xz") as archive:
            archive.extractall(Path(tmp) / "hst", filter="data")
        hst_lib = MappingLibrary.from_dir(Path(tmp) / "hst" / "mappings")
        acts = {a["context"]: Activation(**a) for a in json.loads((Path(tmp) / "hst" / "history.json").read_text())}
        for old, new in (("hst_0722.pmap", "hst_0723.pmap"), ("hst_0701.pmap", "hst_0702.pmap")):
            diff = ActivationDiff("hst", "https://hst-crds.stsci.edu", "latest", acts[new], old,
                                  diff_contexts(old, new, hst_lib).changes)
            _report(f"HST {new} ({len(diff.changes)} changes)", _notice((diff,)))


if __name__ == "__main__":
    main()

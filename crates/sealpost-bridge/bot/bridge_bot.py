#!/usr/bin/env python3
"""An order-status bot for Sealpost, written against sealpost-bridge's local HTTP API.

Standard library only. It long-polls /v1/events, answers "where is my order 1042"-style
questions from a small order table, and offers a person otherwise. It keeps its cursor in
a file, so a restart of the bot (or of the bridge) neither loses nor repeats a message.

    SEALPOST_BRIDGE_URL=http://127.0.0.1:8787 \\
    SEALPOST_BRIDGE_TOKEN_FILE=/var/lib/sealpost-bridge/bridge-token \\
    python3 bridge_bot.py --cursor-file bot-cursor

Options: --once answers one incoming message and exits (used by the bridge's tests);
--timeout SECONDS gives up (exit status 1) if --once has nothing to answer by then;
--max-age SECONDS (default 3600) leaves older messages unanswered: the feed starts with the
history a newly linked device imports, which a bot should not answer again.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Stand-in for the business's order system.
ORDERS = {
    "1042": "has shipped and arrives on Friday",
    "1043": "is being packed",
}

ORDER_RE = re.compile(r"order\s*(?:number\s*|no\.?\s*|#\s*)?(\d{3,})", re.IGNORECASE)


def answer(text):
    """The bot's reply to a customer's message."""
    match = ORDER_RE.search(text or "")
    if not match:
        return "Hello! Ask me about an order (for example: where is my order 1042?), or write 'agent' for a person."
    number = match.group(1)
    status = ORDERS.get(number)
    if status is None:
        return f"I cannot find order {number}. A person will look into it shortly."
    return f"Order {number} {status}."


class Bridge:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, timeout=40):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def events(self, after, wait):
        query = urllib.parse.urlencode({"after": after, "limit": 100, "wait": wait})
        return self.call("GET", "/v1/events?" + query, timeout=wait + 10)

    def send(self, account, text):
        path = "/v1/conversations/" + urllib.parse.quote(account, safe="") + "/messages"
        return self.call("POST", path, {"text": text})


def load_cursor(path):
    if path and os.path.exists(path):
        with open(path) as f:
            return int(f.read().strip() or 0)
    return 0


def save_cursor(path, cursor):
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(cursor))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cursor-file", default=None)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max-age", type=float, default=3600.0)
    args = parser.parse_args()

    url = os.environ.get("SEALPOST_BRIDGE_URL", "http://127.0.0.1:8787")
    token = os.environ.get("SEALPOST_BRIDGE_TOKEN")
    if token is None:
        with open(os.environ["SEALPOST_BRIDGE_TOKEN_FILE"]) as f:
            token = f.read().strip()
    bridge = Bridge(url, token)
    cursor = load_cursor(args.cursor_file)
    deadline = time.monotonic() + args.timeout

    while True:
        try:
            page = bridge.events(cursor, wait=10)
        except urllib.error.HTTPError as e:
            if e.code in (429, 503):
                time.sleep(1)
                continue
            raise
        except urllib.error.URLError:
            time.sleep(1)  # the bridge restarts: try again
            continue
        for event in page["events"]:
            # Answer what customers write; skip what this or another device of ours sent.
            fresh = event["timestamp"] >= (time.time() - args.max_age) * 1000
            if event["kind"] == "incoming" and "text" in event and fresh:
                reply = answer(event["text"])
                bridge.send(event["conversation"], reply)
                print(f"answered a message in {event['conversation']}", file=sys.stderr)
                save_cursor(args.cursor_file, event["cursor"])
                if args.once:
                    return 0
            cursor = event["cursor"]
        cursor = max(cursor, page["next_cursor"])
        save_cursor(args.cursor_file, cursor)
        if args.once and time.monotonic() > deadline:
            print("no message to answer before the timeout", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())

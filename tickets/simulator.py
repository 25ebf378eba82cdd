"""A stand-in for the AI bot, for demos and trials: it escalates realistic conversations through
the real HTTP API, receives and verifies the webhooks, and answers agent replies now and then."""

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

CONVERSATIONS = [
    {
        "language": "sv",
        "skills": ["refunds"],
        "summary": "Charged twice for order {order}; wants one charge refunded.",
        "customer": ["Anna", "Erik", "Karin"],
        "lines": [
            "Jag blev debiterad två gånger för min beställning.",
            "Kan jag få tillbaka pengarna?",
        ],
        "follow_ups": ["Tack! Hur lång tid tar det?", "Ska jag göra något mer?"],
    },
    {
        "language": "en",
        "skills": ["billing"],
        "summary": "The customer does not recognise a charge on invoice {order}.",
        "customer": ["James", "Olivia", "Noah"],
        "lines": [
            "There's a charge on my invoice I don't recognise.",
            "I'd like to talk to a person.",
        ],
        "follow_ups": ["Thanks, that helps.", "Could you send that by e-mail too?"],
    },
    {
        "language": "en",
        "skills": ["technical"],
        "summary": "The app crashes on start since the last update (order {order}).",
        "customer": ["Mia", "Lucas", "Ava"],
        "lines": ["The app crashes every time I open it.", "Your bot's steps did not help."],
        "follow_ups": ["I tried that, still crashing.", "OK, it works now!"],
    },
    {
        "language": "es",
        "skills": ["refunds"],
        "summary": "The customer returned order {order} two weeks ago and has no refund yet.",
        "customer": ["Lucía", "Mateo", "Sofía"],
        "lines": ["Devolví el pedido hace dos semanas.", "Todavía no tengo el reembolso."],
        "follow_ups": ["Gracias por la ayuda.", "¿Me llegará un correo de confirmación?"],
    },
]
PRIORITIES = (["low"] * 2) + (["normal"] * 5) + (["high"] * 2) + ["urgent"]
REASONS = ["customer_requested", "customer_requested", "low_confidence", "sentiment", "policy"]


def verify_signature(body: bytes, secret: str, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


@dataclass
class SimulatedBot:
    url: str
    api_key: str
    signing_secret: str
    reply_probability: float = 0.5
    seed: int | None = None
    say: Callable[[str], None] = print
    conversations: dict[str, dict] = field(default_factory=dict)
    webhooks: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.lock = threading.Lock()
        self.client = httpx.Client(
            base_url=self.url.rstrip("/"),
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        bot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signature = self.headers.get("X-Dispatch-Signature", "")
                self.send_response(204)
                self.end_headers()
                bot.on_webhook(body, verify_signature(body, bot.signing_secret, signature))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()

    def escalate(self) -> dict | None:
        """Hand one made-up conversation over to a human; returns the ticket, or None."""
        template = self.random.choice(CONVERSATIONS)
        order = self.random.randint(1000, 9999)
        external_id = f"sim-{uuid.UUID(int=self.random.getrandbits(128)).hex[:12]}"
        payload = {
            "external_id": external_id,
            "language": template["language"],
            "skills": template["skills"],
            "priority": self.random.choice(PRIORITIES),
            "reason": self.random.choice(REASONS),
            "summary": template["summary"].format(order=order),
            "customer": {
                "id": f"cust-{order}",
                "name": self.random.choice(template["customer"]),
                "tier": self.random.choice(["standard", "standard", "gold"]),
            },
            "transcript": [
                *({"role": "customer", "text": line} for line in template["lines"]),
                {"role": "bot", "text": "I'll connect you with a colleague who can help."},
            ],
            "callback_url": self.callback_url,
        }
        try:
            response = self.client.post("/api/v1/escalations/", json=payload)
        except httpx.HTTPError as exc:
            self.say(f"→ {external_id}: could not reach the platform ({exc})")
            return None
        if response.status_code not in (200, 201):
            self.say(f"→ {external_id}: HTTP {response.status_code} {response.text[:200]}")
            return None
        ticket = response.json()
        with self.lock:
            self.conversations[ticket["id"]] = template
        self.say(
            f"→ escalated {external_id} ({payload['language']}, {', '.join(payload['skills'])}, "
            f"{payload['priority']}): {ticket['status']}, position {ticket['queue_position']}"
        )
        return ticket

    def on_webhook(self, body: bytes, signature_ok: bool) -> None:
        event = json.loads(body)
        with self.lock:
            self.webhooks.append({**event, "signature_ok": signature_ok})
        ticket = event["ticket"]
        check = "signature ok" if signature_ok else "BAD SIGNATURE"
        detail = ""
        if event["event"] == "ticket.assigned":
            detail = f" to {ticket['agent']['display_name']}"
        elif event["event"] == "ticket.message":
            detail = f": {event['message']['text']!r}"
        elif event["event"] == "ticket.resolved":
            detail = f" ({ticket['resolution']['outcome']})"
        self.say(
            f"← {event['event']} {ticket['external_id']} #{event['sequence']}{detail} [{check}]"
        )
        if event["event"] == "ticket.message" and self.random.random() < self.reply_probability:
            self.follow_up(ticket["id"])

    def follow_up(self, ticket_id: str) -> None:
        with self.lock:
            template = self.conversations.get(ticket_id)
        if template is None:
            return
        text = self.random.choice(template["follow_ups"])
        response = self.client.post(f"/api/v1/tickets/{ticket_id}/messages/", json={"text": text})
        self.say(f"→ customer says {text!r}: HTTP {response.status_code}")

    def run(self, *, rate_per_minute: float, count: int | None, duration: float | None) -> int:
        """Escalate at a steady rate until `count` escalations or `duration` seconds."""
        interval = 60.0 / rate_per_minute
        started = time.monotonic()
        sent = attempts = 0
        while (count is None or sent < count) and (
            duration is None or time.monotonic() - started < duration
        ):
            attempts += 1
            if self.escalate() is not None:
                sent += 1
            time.sleep(max(0.0, started + attempts * interval - time.monotonic()))
        return sent

    def wait_until_up(self, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

"""Callback URLs reach public addresses only, under production settings: refused with a 400
naming the field when a bot or a coordinator sets one, and refused again at every webhook
attempt after resolving the host afresh (DNS rebinding), without a connection and without
retries. The world outside (DNS) is played by a table; the bot's endpoint by a local server."""

import ipaddress
import socket

import pytest
from django.contrib import admin
from django.forms.models import model_to_dict
from django.test import RequestFactory

from tests.factories import UserFactory
from tests.test_production_settings import PRODUCTION_ENV, manage
from tickets.admin import TicketAdmin
from tickets.models import Ticket, WebhookDelivery
from tickets.validators import (
    RefusedAddress,
    check_addresses,
    is_public_address,
    resolve_host,
)
from tickets.webhooks import pinned_target, webhook_enqueue

pytestmark = pytest.mark.django_db(transaction=True)

MINIMAL = {"external_id": "conv-1", "language": "en", "customer": {"id": "cust-1"}}
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


@pytest.fixture
def ticket(ticket_factory):
    return ticket_factory()


@pytest.fixture
def production(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    return settings


@pytest.fixture
def dns(monkeypatch):
    """Name resolution from a table: {name: [addresses, ...]} answers the name with each list
    in turn (the last one from then on); IP literals resolve as usual; any other name does not
    resolve."""
    table: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            answers = table[host]
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, port),
                )
                for address in addresses
            ]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def escalate(bot_client, callback_url: str):
    return bot_client.post(
        "/api/v1/escalations/", {**MINIMAL, "callback_url": callback_url}, format="json"
    )


def refusal(host: str, addresses: str) -> dict:
    return {
        "callback_url": [
            f"Must reach a public address: {host} is or resolves to a non-public address "
            f"({addresses})."
        ]
    }


# --- classifying addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.255.0.9",
        "10.1.2.3",  # private
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # link-local: the cloud metadata service
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0",  # unspecified
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",  # site-local
        "ff02::1",  # multicast
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2001:db8::1",  # documentation
        "64:ff9b:1::a00:1",  # local-use NAT64
        "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    ],
)
def test_a_non_public_address_is_not_public(address):
    assert is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize(
    "address",
    [PUBLIC_V4, "8.8.8.8", PUBLIC_V6, f"::ffff:{PUBLIC_V4}", "2002:808:808::1"],
)
def test_a_public_address_is_public(address):
    assert is_public_address(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.1", "127.1"])
def test_numeric_forms_of_loopback_resolve_to_it_and_are_refused(production, host):
    # when
    addresses = resolve_host(host, 443)

    # then
    assert addresses == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(RefusedAddress) as refused:
        check_addresses(host, addresses)
    assert str(refused.value) == f"{host} is or resolves to a non-public address (127.0.0.1)."


# --- at the API -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("callback_url", "host", "addresses"),
    [
        ("https://127.0.0.1/hooks", "127.0.0.1", "127.0.0.1"),
        ("https://10.0.0.5:8443/hooks", "10.0.0.5", "10.0.0.5"),
        ("https://192.168.1.1/hooks", "192.168.1.1", "192.168.1.1"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254", "169.254.169.254"),
        ("https://0.0.0.0/hooks", "0.0.0.0", "0.0.0.0"),
        ("https://224.0.0.1/hooks", "224.0.0.1", "224.0.0.1"),
        ("https://[::1]/hooks", "::1", "::1"),
        ("https://[fe80::1]/hooks", "fe80::1", "fe80::1"),
        ("https://[fd00::1]/hooks", "fd00::1", "fd00::1"),
        ("https://[::]/hooks", "::", "::"),
        ("https://[::ffff:127.0.0.1]/hooks", "::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("https://[::ffff:a00:1]/hooks", "::ffff:a00:1", "::ffff:a00:1"),
        ("https://internal.example.com/hooks", "internal.example.com", "10.20.30.40"),
        ("https://mixed.example.com/hooks", "mixed.example.com", "fd00::7"),
    ],
)
def test_a_callback_url_to_a_non_public_address_is_a_400(
    production, dns, bot_client, callback_url, host, addresses
):
    # given
    dns["internal.example.com"] = [["10.20.30.40"]]
    dns["mixed.example.com"] = [[PUBLIC_V4, "fd00::7"]]

    # when
    response = escalate(bot_client, callback_url)

    # then
    assert response.status_code == 400
    assert response.json() == refusal(host, addresses)
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    "callback_url",
    [
        "https://localhost/hooks",
        "https://LocalHost:8443/hooks",
        "https://api.localhost/hooks",
        "http://localhost:8000/hooks",
    ],
)
def test_a_callback_url_to_localhost_is_a_400(production, dns, bot_client, callback_url):
    # when
    response = escalate(bot_client, callback_url)

    # then
    host = callback_url.split("/")[2].split(":")[0].lower()
    assert response.status_code == 400
    assert response.json() == {
        "callback_url": [f"Must reach a public address: {host} is a loopback host name."]
    }
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    "callback_url",
    ["https://2130706433/hooks", "https://0x7f000001/hooks", "https://0177.0.0.1/hooks"],
)
def test_numeric_host_forms_are_not_valid_urls(production, dns, bot_client, callback_url):
    # when
    response = escalate(bot_client, callback_url)

    # then
    assert response.status_code == 400
    assert response.json() == {"callback_url": ["Enter a valid URL."]}
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    "callback_url",
    [
        f"https://{PUBLIC_V4}/hooks",
        f"https://[{PUBLIC_V6}]/hooks",
        "https://bot.example.com/hooks/dispatch",
        # Not resolvable now: let through, since every attempt checks again.
        "https://not-yet.example.com/hooks",
    ],
)
def test_a_callback_url_to_a_public_address_is_taken(production, dns, bot_client, callback_url):
    # given
    dns["bot.example.com"] = [[PUBLIC_V4, PUBLIC_V6]]

    # when
    response = escalate(bot_client, callback_url)

    # then
    assert response.status_code == 201
    assert Ticket.objects.get().callback_url == callback_url


def test_private_addresses_are_taken_where_the_settings_allow_them(settings, bot_client):
    # given: the development and test default
    assert settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES is True

    # when
    response = escalate(bot_client, "https://10.0.0.5/hooks")

    # then
    assert response.status_code == 201
    assert Ticket.objects.get().callback_url == "https://10.0.0.5/hooks"


def test_a_port_out_of_range_is_a_400(bot_client):
    # when
    response = escalate(bot_client, "https://bot.example.com:99999/hooks")

    # then
    assert response.status_code == 400
    assert response.json() == {"callback_url": ["The port is not valid."]}


def test_production_settings_refuse_private_callback_addresses():
    # when
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES)",
        **PRODUCTION_ENV,
    )

    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"


# --- in the admin ---------------------------------------------------------------------------


def ticket_form_errors(ticket: Ticket, callback_url: str) -> dict:
    request = RequestFactory().post(f"/admin/tickets/ticket/{ticket.pk}/change/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    form_class = TicketAdmin(Ticket, admin.site).get_form(request, ticket, change=True)
    data = {
        key: value
        for key, value in model_to_dict(ticket, fields=form_class.base_fields).items()
        if value is not None
    }
    form = form_class(data={**data, "callback_url": callback_url}, instance=ticket)
    form.is_valid()
    return dict(form.errors)


def test_the_ticket_admin_refuses_a_callback_url_to_a_private_address(production, ticket_factory):
    # given
    ticket = ticket_factory()

    # when
    errors = ticket_form_errors(ticket, "https://192.168.0.10/hooks")

    # then
    assert errors == {
        "callback_url": [
            "Must reach a public address: 192.168.0.10 is or resolves to a non-public "
            "address (192.168.0.10)."
        ]
    }


def test_the_ticket_admin_takes_a_public_callback_url(production, ticket_factory):
    # given
    ticket = ticket_factory()

    # when
    errors = ticket_form_errors(ticket, f"https://{PUBLIC_V4}/hooks")

    # then
    assert errors == {}


# --- at send time -----------------------------------------------------------------------------


def test_a_delivery_whose_host_now_resolves_to_a_private_address_is_failed_unsent(
    production, dns, bot_client, bot_receiver
):
    # given: the name resolved to a public address when the bot escalated, and now resolves to
    # this machine (DNS rebinding), where the receiver listens
    port = bot_receiver.server.server_address[1]
    dns["rebind.example.com"] = [[PUBLIC_V4], ["127.0.0.1"]]
    callback_url = f"https://rebind.example.com:{port}/hooks/dispatch"
    assert escalate(bot_client, callback_url).status_code == 201
    ticket = Ticket.objects.get()

    # when: the event is recorded, and its delivery task runs after commit
    delivery = webhook_enqueue(ticket=ticket, event="ticket.assigned")

    # then: refused without a connection, given up at once, the reason recorded
    delivery.refresh_from_db()
    assert bot_receiver.received == []
    assert (delivery.state, delivery.attempt_count, delivery.next_attempt_at) == (
        WebhookDelivery.State.FAILED,
        1,
        None,
    )
    assert list(delivery.attempts.values_list("status_code", "error")) == [
        (
            None,
            "Refused: rebind.example.com is or resolves to a non-public address (127.0.0.1).",
        )
    ]


def test_a_delivery_stored_before_the_settings_changed_is_refused_at_send_time(
    settings, ticket_factory, bot_receiver
):
    # given: a ticket whose loopback callback was taken while private addresses were allowed
    ticket = ticket_factory(callback_url=bot_receiver.url)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False

    # when: the delivery task runs after commit
    delivery = webhook_enqueue(ticket=ticket, event="ticket.assigned")

    # then
    delivery.refresh_from_db()
    assert bot_receiver.received == []
    assert delivery.state == WebhookDelivery.State.FAILED
    assert list(delivery.attempts.values_list("error", flat=True)) == [
        "Refused: 127.0.0.1 is or resolves to a non-public address (127.0.0.1)."
    ]


def test_a_host_that_does_not_resolve_is_retried_as_a_connection_error(production, dns, ticket):
    # given
    Ticket.objects.filter(pk=ticket.pk).update(callback_url="https://gone.example.com/hooks")
    ticket.refresh_from_db()

    # when: the event is recorded, and its delivery task runs after commit
    delivery = webhook_enqueue(ticket=ticket, event="ticket.assigned")

    # then
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempt_count) == (WebhookDelivery.State.PENDING, 1)
    assert delivery.next_attempt_at is not None
    assert list(delivery.attempts.values_list("error", flat=True)) == [
        "ConnectError: gone.example.com does not resolve: [Errno -2] Name or service not known"
    ]


def test_an_attempt_connects_to_the_address_it_checked(production, dns):
    # given
    dns["bot.example.com"] = [[PUBLIC_V6, PUBLIC_V4]]

    # when
    target = pinned_target("https://bot.example.com:8443/hooks?v=1")

    # then: the checked address, with the name kept for Host and for the TLS certificate
    assert target == (
        f"https://[{PUBLIC_V6}]:8443/hooks?v=1",
        {"Host": "bot.example.com:8443"},
        {"sni_hostname": "bot.example.com"},
    )


def test_a_plain_http_attempt_has_no_tls_name(production, dns):
    # given
    dns["bot.example.com"] = [[PUBLIC_V4]]

    # when
    target = pinned_target("http://bot.example.com/hooks")

    # then
    assert target == (f"http://{PUBLIC_V4}/hooks", {"Host": "bot.example.com"}, {})


def test_where_private_addresses_are_allowed_an_attempt_connects_as_the_url_says(settings):
    assert pinned_target("http://localhost:8000/hooks") == ("http://localhost:8000/hooks", {}, {})

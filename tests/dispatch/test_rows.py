"""The primary-key reads whose statement is built once: the same rows the ORM reads, the same
refusals, and no compiling after the first call."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from agents.models import Agent
from dispatch.models import Offer
from dispatch.rows import RowByKey
from tests.factories import AgentFactory, TicketFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def field_values(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}


def test_a_row_read_by_key_holds_every_field_as_the_orm_reads_it():
    # given: rows with UUIDs, decimals, datetimes, booleans and nulls
    now = timezone.now()
    agent = AgentFactory(pay_rate=Decimal("17.25"), idle_since=now - timedelta(minutes=3))
    ticket = TicketFactory(sla_breached=True, sla_breached_at=now, agent=agent)

    # when
    agents = RowByKey(lambda: Agent.objects.all())
    tickets = RowByKey(lambda: Ticket.objects.all())
    with transaction.atomic():
        locked = RowByKey(lambda: Ticket.objects.select_for_update(no_key=True)).get(ticket.pk)

    # then
    assert field_values(agents.get(agent.pk)) == field_values(Agent.objects.get(pk=agent.pk))
    assert field_values(tickets.get(ticket.pk)) == field_values(Ticket.objects.get(pk=ticket.pk))
    assert field_values(locked) == field_values(Ticket.objects.get(pk=ticket.pk))
    assert tickets.get(str(ticket.pk)).pk == ticket.pk


def test_a_row_read_by_key_decodes_json_as_the_orm_does():
    # given: an offer with the parts of its score, a JSON object
    ticket = TicketFactory()
    offer = Offer.objects.create(
        ticket=ticket,
        agent=AgentFactory(),
        expires_at=timezone.now(),
        score=0.75,
        score_parts={"quality": 0.4, "idle": {"seconds": 12}},
    )

    # when
    read = RowByKey(lambda: Offer.objects.all()).get(offer.pk)

    # then
    assert read.score_parts == {"quality": 0.4, "idle": {"seconds": 12}}
    assert field_values(read) == field_values(Offer.objects.get(pk=offer.pk))


def test_a_key_with_no_row_reads_none():
    tickets = RowByKey(lambda: Ticket.objects.all())
    TicketFactory()

    assert tickets.get(TicketFactory.build().pk) is None


def test_the_statement_is_built_on_the_first_read_only(monkeypatch):
    # given: every statement Django builds, counted
    tickets = [TicketFactory(), TicketFactory(), TicketFactory()]
    built = []
    as_sql = SQLCompiler.as_sql

    def counted(compiler, *args, **kwargs):
        built.append(compiler.query.model)
        return as_sql(compiler, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    reads = RowByKey(lambda: Ticket.objects.all())

    # when
    read = [reads.get(ticket.pk).pk for ticket in tickets]

    # then
    assert read == [ticket.pk for ticket in tickets]
    assert built == [Ticket]


@pytest.mark.django_db(transaction=True)
def test_a_lock_outside_a_transaction_is_refused_on_every_read():
    ticket = TicketFactory()
    locked = RowByKey(lambda: Ticket.objects.select_for_update(no_key=True))

    with pytest.raises(TransactionManagementError):
        locked.get(ticket.pk)
    with transaction.atomic():
        assert locked.get(ticket.pk).pk == ticket.pk
    with pytest.raises(TransactionManagementError):
        locked.get(ticket.pk)


def test_rows_already_filtered_are_refused():
    ticket = TicketFactory()
    queued = RowByKey(lambda: Ticket.objects.filter(status=Ticket.Status.QUEUED))

    with pytest.raises(TypeError, match="unfiltered"):
        queued.get(ticket.pk)


def test_rows_with_related_columns_are_refused():
    ticket = TicketFactory()
    with_agent = RowByKey(lambda: Ticket.objects.select_related("agent"))

    with pytest.raises(TypeError, match="the model's own columns only"):
        with_agent.get(ticket.pk)

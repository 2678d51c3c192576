"""The one KPI definition (README, "Delivery KPIs"), without a database."""
from __future__ import annotations

from dataclasses import dataclass

from core.kpis import DeliveryKpis, pct


def test_percentages_round_to_a_tenth_and_are_zero_without_a_base():
    assert pct(1, 3) == 33.3 and pct(2, 3) == 66.7 and pct(5, 5) == 100.0
    assert pct(0, 0) == 0.0 and pct(3, 0) == 0.0


def test_opens_and_clicks_are_contacts_over_delivered_contacts_not_emails():
    # 4 emails to 3 contacts, one bounced: 3 emails delivered to 2 contacts; one contact opened twice
    kpis = DeliveryKpis(sent=4, bounces=1, delivered_contacts=2, opens=1, clicks=2, replies=1)
    assert kpis.delivered == 3 and kpis.delivered_pct == 75.0
    assert kpis.opens_pct == 50.0 and kpis.clicks_pct == 100.0
    assert DeliveryKpis(sent=1, bounces=3).delivered == 0  # never negative


def test_figures_of_disjoint_groups_add_up():
    a = DeliveryKpis(sent=3, bounces=1, delivered_contacts=2, opens=1, clicks=0, replies=1, unsubscribes=0)
    b = DeliveryKpis(sent=2, bounces=0, delivered_contacts=2, opens=2, clicks=1, replies=0, unsubscribes=1)
    total = a + b
    assert total == DeliveryKpis(sent=5, bounces=1, delivered_contacts=4, opens=3, clicks=1, replies=1, unsubscribes=1)
    assert total.opens_pct == 75.0


def test_a_subclass_keeps_its_own_fields_when_added():
    @dataclass(frozen=True)
    class WithTasks(DeliveryKpis):
        tasks: int = 0

    total = WithTasks(sent=1, tasks=2) + WithTasks(sent=2, tasks=1)
    assert isinstance(total, WithTasks) and (total.sent, total.tasks) == (3, 3)


def test_the_status_document_keys():
    kpis = DeliveryKpis(sent=10, bounces=2, delivered_contacts=8, opens=4, clicks=2, replies=1, unsubscribes=1)
    assert kpis.as_dict() == {"sent": 10, "delivered": 8, "delivered_pct": 80.0, "delivered_contacts": 8,
                              "opens": 4, "opens_pct": 50.0, "clicks": 2, "clicks_pct": 25.0, "replies": 1,
                              "bounces": 2, "unsubscribes": 1}

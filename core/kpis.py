"""The one definition of the delivery KPIs, shared by `cadence status`, Slack, digests and the web app.

What each figure counts (README, "Delivery KPIs"):
- `sent`: messages that went out (automatic emails and the drafts reps sent);
- `bounces`: sent messages that bounced; `delivered` = sent - bounces, `delivered_pct` = % of sent;
- `delivered_contacts`: contacts with at least one delivered message;
- `opens` / `clicks`: unique contacts who opened / clicked at least once; `opens_pct` and
  `clicks_pct` are % of `delivered_contacts`;
- `replies`, `unsubscribes`: unique contacts.
A "contact" is one enrollment (one person in one campaign), so figures of disjoint groups of
enrollments (per rep, per campaign) add up with `+`. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


def pct(part: int, whole: int) -> float:
    """`part` as a percentage of `whole`, rounded to 0.1; 0.0 when `whole` is 0."""
    return round(100.0 * part / whole, 1) if whole else 0.0


@dataclass(frozen=True)
class DeliveryKpis:
    """Delivery KPIs of a group of messages (all counts are non-negative integers)."""

    sent: int = 0
    bounces: int = 0
    delivered_contacts: int = 0
    opens: int = 0
    clicks: int = 0
    replies: int = 0
    unsubscribes: int = 0

    @property
    def delivered(self) -> int:
        """Sent messages that did not bounce."""
        return max(self.sent - self.bounces, 0)

    @property
    def delivered_pct(self) -> float:
        return pct(self.delivered, self.sent)

    @property
    def opens_pct(self) -> float:
        return pct(self.opens, self.delivered_contacts)

    @property
    def clicks_pct(self) -> float:
        return pct(self.clicks, self.delivered_contacts)

    def __add__(self, other: "DeliveryKpis") -> "DeliveryKpis":
        """The figures of two disjoint groups of enrollments together (same class as `self`)."""
        return type(self)(**{f.name: getattr(self, f.name) + getattr(other, f.name, 0) for f in fields(self)})

    def as_dict(self) -> dict:
        """{"sent", "delivered", "delivered_pct", "delivered_contacts", "opens", "opens_pct", "clicks",
        "clicks_pct", "replies", "bounces", "unsubscribes"}: the `delivery` keys of `cadence status --json`."""
        return {"sent": self.sent, "delivered": self.delivered, "delivered_pct": self.delivered_pct,
                "delivered_contacts": self.delivered_contacts,
                "opens": self.opens, "opens_pct": self.opens_pct,
                "clicks": self.clicks, "clicks_pct": self.clicks_pct,
                "replies": self.replies, "bounces": self.bounces, "unsubscribes": self.unsubscribes}

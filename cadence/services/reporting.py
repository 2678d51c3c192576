"""Campaign status and logs: kept under this name for existing callers; the read side is
`cadence.services.reads` (see `cadence.services.reads.status`)."""
from cadence.services.reads.status import (
    campaign_logs,
    campaign_status,
    campaign_status_by_id,
    delivery_kpis,
    list_campaigns,
    status_of,
)

__all__ = ["campaign_logs", "campaign_status", "campaign_status_by_id", "delivery_kpis", "list_campaigns",
           "status_of"]

"""The delivery queue (`claims`, `intent`, `outcomes`): the rows that say which message goes when, who holds it, and how it ended.

Every function takes a session (one unit of work, opened by the caller) and the instant `now`;
none reads a clock or calls a provider. How the worker uses them (docs/workers.md):

1. *Claim and intent* (`intent.claim_and_begin`), one transaction: a batch of due messages is
   locked (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, one writer, `BEGIN IMMEDIATE`, on
   SQLite), the mailbox's limits are reserved (daily caps, the per-minute window) and the messages
   that go are moved to `sending` and leased to one claim token in one statement, our Message-ID
   being their identity at the provider. The heartbeat (`extend_leases`) keeps the lease while the
   worker lives. (`claim_due` leases due messages alone.)
2. *Draft* (`record_drafts`): the provider's draft id is stored, by the claim's holder only,
   before the draft is sent; every later attempt sends that same draft.
3. *Outcomes* (`write_outcomes`): written by the claim's holder only (the token fences a worker
   that lost its lease); anything else is left to reconciliation (`claim_expired`).

Concurrency slots (`take_slot`, `free_slot`) and sync leases (`claim_syncs`, `end_syncs`) are
leased rows too, extended by the same heartbeat.
"""

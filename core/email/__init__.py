"""Email as data: the one place Cadence builds and reads RFC 5322 / MIME messages.

Why in `core/`: building a message from an `OutgoingEmail` and reading what an observed message
says (its thread headers, whether it is a delivery report or an automatic reply, which of our
emails it names) is pure computation on bytes already in memory, with the stdlib `email`
package. It does no I/O and needs no clock; the decisions that follow (`core.observations`)
need the same readers. Connectors translate provider payloads into and out of these messages:

- Maildir writes the bytes of `compose.build_message` as they are.
- Gmail sends the same message, base64url-encoded in `raw` (Gmail adds its own Date on send).
- Outlook cannot send MIME it did not build: Graph takes JSON (subject, HTML body, recipients,
  internetMessageId, X- headers only). It uses `message_id` and `core.headers` for the same
  checks, and reads delivery reports with the same `bounces.read_bounce` from the MIME Graph
  returns for a message (`GET /me/messages/{id}/$value`).

Modules: `message_id` (the one Message-ID rule), `compose` (build and re-body a message),
`read` (headers, addresses, dates, snippets, thread root of a received message), `bounces`
(the one reader of delivery-status notifications and non-delivery reports). Header values are
checked by `core.headers`, which every builder calls.
"""

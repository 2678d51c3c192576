"""What tests in more than one folder (and `bench/`) build on; the one place they import from.

A test imports from its own folder, from `tests.support` and from `tests.fakes` (the local
servers that speak Gmail, Graph, the Microsoft identity platform and Slack over real HTTP), never
from another folder and never a conftest or a test module (tests/test_layout.py checks this).
Fixtures stay in each folder's conftest.py and build on the classes here.

- `databases`: where the test PostgreSQL is; `cli`: the real CLI run in-process.
- `prepare`: a rep, a Maildir mailbox, campaign and contact files for prepare/send flows.
- `http`: `cadence serve`'s HTTP app on a real socket; tracking paths of a sent email.
- `slack`: the Slack bot's world (reps, campaigns with open tasks) and the served app.
- `mail`: the corpus of real-world replies, automatic replies and delivery reports (tests/data/mail).
- `gmail`, `outlook`, `maildir`: per-provider worlds, emails and recorded messages (bounces …).
- `reads`: the read side's world (who sees what, tasks, KPIs).
- `crm`: the fake Salesforce org and the CRM flow set up through the CLI.
- `web`: the web app's running site, its seeded campaign and Selenium steps.
- `workers`: in-process workers sharing one database, clock and scripted memory provider.
- `cluster`, `tcp_proxy`: real `cadence worker` processes killed at random, for chaos and soak.
"""

"""Salesforce: OAuth, REST calls through simple-salesforce, and the translation between Cadence's
activities and Salesforce records. Imports only `core` and itself; the use cases that read the
store and decide when to call live in `cadence/services/crm*.py`."""

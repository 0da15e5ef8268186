"""Broker lifecycle: creation with a key, the key supervisor, status, requests, deletion.

- ``state``       Amazon MQ's broker states and ``actionsRequired``; ``status.json``;
  the run lock
- ``keys``        the key hierarchy: creating a broker with its key (grant, per-broker
  key), checking later configurations, the store's ``KeyProvider``, the key-access
  check, crypto-shredding
- ``supervisor``  RUNNING <-> CRITICAL_ACTION_REQUIRED as the key service answers
- ``requests``    asking a running broker to act (request file + SIGUSR1)
- ``operations``  what ``sealmq status`` / ``sealmq broker ...`` do
- ``admin``       the generated admin password, kept readable until ``[[users]]``
  replace it

Imports config, store, kms and core; never net or adapters (the composition root,
``sealmq.app``, hands the supervisor what serves clients).
"""

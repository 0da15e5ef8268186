"""The key service: keys, grants, KMS semantics, the AWS KMS JSON wire, audit, clients.

Imports nothing of sealmq outside this package. Modules:

- ``keystore``  state (keys and versions, aliases, grants, policies, tags, access
  keys, the audit trail's checkpoint) sealed under a root key in one file
- ``service``   :class:`~sealmq.kms.service.KeyService`, the KMS operations
  (request dict in, response dict out), principals and grants, the three kinds of
  key Amazon MQ offers, per-broker keys; ``open_key_service(data_dir)``
- ``ciphertext`` the ciphertext blob format; ``grants``, ``params``, ``errors``
- ``audit``     the hash-chained CloudTrail-shaped trail, its checkpoint and ``verify_audit``
- ``sigv4``, ``wire``, ``server``  SigV4, the JSON 1.1 protocol, the HTTPS server
- ``clients``   ``ServiceKeyProvider`` and ``RemoteKeyProvider`` for the store
- ``policy``    key policies: validation and evaluation
- ``local``     a keystore folder's service-owned key as a bare KeyProvider (tests, tools)

Nothing is imported here, so ``sealmq.kms.local`` stays importable without botocore.
"""

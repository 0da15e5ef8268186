"""Encrypted persistence (see docs/store.md).

Entry points: ``filestore.FileStore`` and ``memory.MemoryStore`` (the core's
``MessageStore``), ``keys.KeyProvider``, ``sealed.write_sealed`` /
``sealed.read_sealed``, and the errors in ``errors``.
"""

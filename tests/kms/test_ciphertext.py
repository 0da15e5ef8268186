"""The ciphertext blob format and the length-prefixed encryption context."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealmq.kms.ciphertext import InvalidBlob, encode_context, open_blob, parse_header, seal_blob
from sealmq.kms.keystore import Keystore
from sealmq.kms.local import LocalKeyService

KEY = os.urandom(32)
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def test_round_trip_and_header() -> None:
    blob = seal_blob(KEY, KEY_ID, 3, b"plain", {"a": "1"})
    header = parse_header(blob)
    assert header.key_id == KEY_ID and header.version == 3
    assert blob.startswith(b"SMQK\x01")
    assert open_blob(KEY, header, blob, {"a": "1"}) == b"plain"
    assert b"plain" not in blob


def test_every_damaged_byte_is_refused() -> None:
    blob = seal_blob(KEY, KEY_ID, 1, b"plain", {})
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0x80
        with pytest.raises(InvalidBlob):
            open_blob(KEY, parse_header(bytes(damaged)), bytes(damaged), {})
    for cut in range(len(blob)):
        with pytest.raises(InvalidBlob):
            short = blob[:cut]
            open_blob(KEY, parse_header(short), short, {})


def test_context_encoding_is_length_prefixed_and_sorted() -> None:
    assert encode_context({"ab": "c"}) != encode_context({"a": "bc"})
    assert encode_context({"a": "1", "b": "2"}) == encode_context({"b": "2", "a": "1"})
    assert encode_context({}) == struct.pack(">I", 0)
    assert encode_context({"k": "v"}) == struct.pack(">IIsIs", 1, 1, b"k", 1, b"v")


@given(
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4), st.binary(max_size=64)
)
def test_any_context_binds(context: dict[str, str], plaintext: bytes) -> None:
    blob = seal_blob(KEY, KEY_ID, 1, plaintext, context)
    assert open_blob(KEY, parse_header(blob), blob, context) == plaintext
    with pytest.raises(InvalidBlob):
        open_blob(KEY, parse_header(blob), blob, {**context, "extra-key": "x"})


def test_local_key_service_blobs_have_this_format(tmp_path: object) -> None:
    from pathlib import Path

    keys_dir = Path(str(tmp_path)) / "keys"
    service = LocalKeyService(keys_dir)
    dek, wrapped = service.generate_data_key({"a": "b"})
    header = parse_header(wrapped)
    assert header.key_id == service.key_id and header.version == 1
    material = Keystore.open(keys_dir).keys[service.key_id].current.material
    assert open_blob(material, header, wrapped, {"a": "b"}) == dek

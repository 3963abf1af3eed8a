"""API keys: the documented shape, uniqueness, and a hash that depends on the pepper."""

from __future__ import annotations

import re

import pytest

from odeatts.keys import KEY_PREFIX, generate_key, hash_key, key_prefix, looks_like_key

PEPPER = b"a-pepper-of-at-least-thirty-two-bytes!!"
SHAPE = re.compile(r"odea_[A-Za-z0-9]{8}_[A-Za-z0-9]{32}")


def test_generated_key_has_the_documented_shape() -> None:
    key = generate_key(PEPPER)
    assert SHAPE.fullmatch(key.plain)
    assert looks_like_key(key.plain)
    assert key.plain.startswith(KEY_PREFIX) and KEY_PREFIX == "odea_"


def test_keys_are_unique_over_many_draws() -> None:
    keys = [generate_key(PEPPER) for _ in range(1000)]
    assert len({k.plain for k in keys}) == 1000
    assert len({k.hash for k in keys}) == 1000
    assert all(SHAPE.fullmatch(k.plain) for k in keys)


def test_hash_is_hmac_of_the_plain_key_and_never_the_key() -> None:
    key = generate_key(PEPPER)
    assert key.hash == hash_key(key.plain, PEPPER)
    assert re.fullmatch(r"[0-9a-f]{64}", key.hash)
    assert key.plain not in key.hash


def test_hash_differs_with_another_pepper() -> None:
    key = generate_key(PEPPER)
    assert hash_key(key.plain, PEPPER) != hash_key(key.plain, PEPPER + b"x")
    assert hash_key(key.plain, PEPPER) == hash_key(key.plain, bytes(PEPPER))


def test_prefix_is_the_public_part() -> None:
    key = generate_key(PEPPER)
    assert key.prefix == key_prefix(key.plain) == key.plain[:13]
    assert re.fullmatch(r"odea_[A-Za-z0-9]{8}", key.prefix)
    secret = key.plain.split("_")[2]
    assert secret not in key.prefix


GOOD = "odea_AbCd1234_" + "x" * 30 + "Z9"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "odea_",
        GOOD[:-1],  # secret one short
        GOOD + "a",  # secret one long
        "odea_AbCd123_" + "x" * 32,  # id one short
        "odea_AbCd12345_" + "x" * 31,  # id one long, same total length
        "Odea_AbCd1234_" + "x" * 32,  # wrong case in the prefix
        "odeaAbCd1234_" + "x" * 32,
        "odea-AbCd1234-" + "x" * 32,
        "odea_AbCd1234_" + "x" * 31 + "-",
        "odea_AbCd1234_" + "x" * 31 + "é",
        " " + GOOD,
        GOOD + "\n",  # `$` would let this through; the check must be a full match
        "sk_AbCd1234_" + "x" * 32,
    ],
)
def test_looks_like_key_rejects_near_misses(value: str) -> None:
    assert not looks_like_key(value)


def test_looks_like_key_accepts_the_shape() -> None:
    assert looks_like_key(GOOD)

"""TokenStore: pre-shared tokens in either header form, the memory of headers already seen to carry one
(bounded, and never for registration tokens, which can be withdrawn), and unknown tokens refused."""

from __future__ import annotations

import base64

import pytest

from bridge.config import TokenConfig
from bridge.ocpi.auth import PRESHARED_HEADERS_KEPT, Party, Registration, TokenStore
from bridge.ocpi.errors import AuthenticationError
from bridge.ocpi.versions import OcpiVersion
from bridge.store.database import Database

TOKEN = "preshared-token-for-the-cpo"


def b64(token: str) -> str:
    return base64.b64encode(token.encode()).decode()


def tokens(db: Database) -> TokenStore:
    return TokenStore(db, [TokenConfig(token=TOKEN, country_code="DE", party_id="OBD")])


async def test_a_preshared_token_authenticates_in_every_spelling_and_the_memory_stays_bounded(
    db: Database,
) -> None:
    store = tokens(db)
    spellings = [f"Token {TOKEN}", f"Token {b64(TOKEN)}", f"token {TOKEN}"]
    spellings += [f"Token{' ' * n}{TOKEN}" for n in range(2, PRESHARED_HEADERS_KEPT + 20)]
    for _ in range(2):  # the second time from memory (where it fitted): same answers
        for header in spellings:
            caller = await store.authenticate(header)
            assert caller.party == Party("DE", "OBD")
            assert not caller.registered
            assert caller.token == TOKEN
    assert len(store._preshared_headers) == PRESHARED_HEADERS_KEPT


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Token",
        "Bearer " + TOKEN,
        f"Token {TOKEN}x",
        f"Token {b64(TOKEN + 'x')}",
        "Token " + "a" * 5000,
    ],
)
async def test_anything_but_a_known_token_is_refused_even_after_the_real_one_was_seen(
    db: Database, header: str | None
) -> None:
    store = tokens(db)
    await store.authenticate(f"Token {TOKEN}")
    with pytest.raises(AuthenticationError):
        await store.authenticate(header)


async def test_a_registration_token_is_checked_against_the_store_every_time(db: Database) -> None:
    store = tokens(db)
    registered = "token-issued-at-registration"
    await store.save(
        Registration(
            Party("NL", "ABC"), OcpiVersion.V2_2_1, registered, "outbound", "https://cpo/versions", [], {}
        )
    )
    header = f"Token {b64(registered)}"
    for _ in range(2):
        caller = await store.authenticate(header)
        assert caller.party == Party("NL", "ABC")
        assert caller.registered
    assert await store.delete(Party("NL", "ABC"))
    with pytest.raises(AuthenticationError):  # withdrawn: not remembered anywhere
        await store.authenticate(header)

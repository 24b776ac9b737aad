"""The example project's shared-token validator compares in constant time (``hmac.compare_digest``)."""

import hmac

import pytest

from livesync_project import auth

pytestmark = pytest.mark.security

TOKEN = "the-shared-token-of-the-example"


async def test_the_example_validator_compares_with_compare_digest(monkeypatch):
    monkeypatch.setenv("LIVESYNC_AUTH_TOKEN", TOKEN)
    compared = []
    real = hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    await auth.validate_payload({"authToken": TOKEN}, None)
    with pytest.raises(ValueError, match="Invalid auth token"):
        await auth.validate_payload({"authToken": TOKEN[:-1] + "x"}, None)
    assert len(compared) == 2
    # What is no string, or no ASCII (which compare_digest refuses as str), is refused as any wrong token.
    for payload in (None, {}, {"authToken": None}, {"authToken": 7}, {"authToken": "tökén"}):
        with pytest.raises(ValueError, match="Invalid auth token"):
            await auth.validate_payload(payload, None)

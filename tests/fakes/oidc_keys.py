"""A fake identity provider's ID-token signing: one RSA key (its public half published as a JWKS)
and RS256 ID tokens (OpenID Connect Core 1.0 §2), for the fake Google and Microsoft servers.

`forge_with_other_key` makes the next tokens carry the published `kid` but a signature by a key
nobody publishes (a forged token); `claims_override` changes claims of the next tokens
(`None` removes one)."""
from __future__ import annotations

import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class SigningKeys:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:16]
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.forge_with_other_key = False
        self.claims_override: dict = {}
        self.jwks_requests = 0

    def jwks(self) -> dict:
        self.jwks_requests += 1
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, *, issuer: str, audience: str, subject: str, nonce: str | None, lifetime: int = 3600,
                 **claims) -> str:
        now = int(time.time())
        body = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime, **claims}
        if nonce is not None:
            body["nonce"] = nonce
        for name, value in self.claims_override.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        key = self._other if self.forge_with_other_key else self._key
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": self.kid})

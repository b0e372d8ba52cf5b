"""A throwaway RSA key pair for GitHub App tests, made once per test session."""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@lru_cache(maxsize=1)
def app_key_pair() -> tuple[str, str]:
    return new_key_pair()


@lru_cache(maxsize=1)
def second_key_pair() -> tuple[str, str]:
    """Another App's (agent tokens' App)."""
    return new_key_pair()


def new_key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public

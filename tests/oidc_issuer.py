"""A local OIDC issuer for tests: a real HTTP server on 127.0.0.1 that publishes a discovery document and
a JWKS of locally generated keys, and mints ID tokens shaped like GitHub Actions' and GitLab CI's.

    with running_oidc_issuer(audience="agentgate") as issuer:
        settings = Settings(oidc_issuers=((issuer.url, "agentgate"),), ...)
        token = issuer.mint({"repository": "acme/widgets"})          # GitHub Actions shape
        token = issuer.mint({}, shape="gitlab")                        # GitLab CI shape
        issuer.rotate()                     # a new key replaces the published ones
        assert issuer.fetches["jwks"] == 1  # what agentgate asked for

Its documented contracts: OIDC Discovery 1.0 (`/.well-known/openid-configuration` naming `issuer` and
`jwks_uri`), RFC 7517 key sets; GitHub's key set is at `/.well-known/jwks`, GitLab's at
`/oauth/discovery/keys` (`jwks_path`)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

GITHUB_SUBJECT = "repo:acme/agent-runner:ref:refs/heads/main"
GITLAB_SUBJECT = "project_path:acme/agent-runner:ref_type:branch:ref:main"
_DEFAULT: Any = object()  # "not given" where None means "leave it out"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any  # a cryptography private key
    jwk: dict[str, Any]  # the public half as published (kid, alg, use)


def generate_key(kind: str = "rsa", *, kid: str | None = None, alg: str | None = None,
                 publish_alg: bool = True) -> SigningKey:
    """A fresh key: `rsa` (RS256, 2048 bits), `ec` (ES256, P-256) or `ed25519` (EdDSA)."""
    kid = kid or uuid.uuid4().hex[:16]
    if kind == "rsa":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = alg or "RS256"
    elif kind == "ec":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = alg or "ES256"
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = alg or "EdDSA"
    else:
        raise ValueError(f"unknown key kind {kind!r}")
    jwk.update({"kid": kid, "use": "sig"})
    if publish_alg:
        jwk["alg"] = alg
    return SigningKey(kid=kid, alg=alg, private=private, jwk=jwk)


@dataclass
class OIDCIssuer:
    url: str
    audience: str
    jwks_path: str = "/.well-known/jwks"
    keys: list[SigningKey] = field(default_factory=list)  # published, the first signs by default
    fetches: Counter[str] = field(default_factory=Counter)  # "discovery" / "jwks" -> requests answered
    down: bool = False  # answer 503 to everything
    discovery_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. a wrong `issuer`, an http jwks_uri
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def jwks_uri(self) -> str:
        return self.url + self.jwks_path

    @property
    def total_fetches(self) -> int:
        with self._lock:
            return sum(self.fetches.values())

    def add_key(self, kind: str = "rsa", **kwargs: Any) -> SigningKey:
        key = generate_key(kind, **kwargs)
        with self._lock:
            self.keys.append(key)
        return key

    def rotate(self, kind: str = "rsa", **kwargs: Any) -> SigningKey:
        """A new key replaces every published one (and signs from now on)."""
        key = generate_key(kind, **kwargs)
        with self._lock:
            self.keys[:] = [key]
        return key

    def claims(self, shape: str = "github", now: float | None = None, lifetime: int = 300) -> dict[str, Any]:
        """The claims GitHub Actions (or GitLab CI) puts in an ID token, for acme/agent-runner on main."""
        now = int(time.time() if now is None else now)
        common = {"iss": self.url, "aud": self.audience, "iat": now, "nbf": now - 5, "exp": now + lifetime,
                  "jti": uuid.uuid4().hex}
        if shape == "github":
            return {**common, "sub": GITHUB_SUBJECT, "repository": "acme/agent-runner",
                    "repository_owner": "acme", "repository_id": "74", "ref": "refs/heads/main",
                    "ref_type": "branch", "sha": "a" * 40, "workflow": "agent", "event_name": "workflow_dispatch",
                    "job_workflow_ref": "acme/agent-runner/.github/workflows/agent.yml@refs/heads/main",
                    "actor": "octocat", "run_id": "9001", "run_number": "12", "run_attempt": "1",
                    "runner_environment": "github-hosted"}
        if shape == "gitlab":
            return {**common, "sub": GITLAB_SUBJECT, "namespace_path": "acme", "project_path": "acme/agent-runner",
                    "project_id": "22", "ref": "main", "ref_type": "branch", "ref_protected": "true",
                    "pipeline_id": "1212", "pipeline_source": "push", "job_id": "302", "user_login": "octocat",
                    "ci_config_ref_uri": "gitlab.example/acme/agent-runner//.gitlab-ci.yml@refs/heads/main"}
        raise ValueError(f"unknown shape {shape!r}")

    def mint(self, claims: dict[str, Any] | None = None, *, key: SigningKey | None = None, alg: str | None = None,
             kid: Any = _DEFAULT, headers: dict[str, Any] | None = None, shape: str = "github",
             now: float | None = None) -> str:
        """An ID token: the `shape`'s claims updated with `claims` (a None value removes that claim),
        signed by `key` (default: the first published key) with `alg` (default: the key's), the header's
        `kid` the key's unless given (None: no kid)."""
        body = self.claims(shape, now=now)
        for name, value in (claims or {}).items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        if key is None:
            with self._lock:
                key = self.keys[0]
        header = dict(headers or {})
        if kid is _DEFAULT:
            header["kid"] = key.kid
        elif kid is not None:
            header["kid"] = kid
        return jwt.encode(body, key.private, algorithm=alg or key.alg, headers=header)

    # -- the HTTP side
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if self.down:
            return Response("unavailable", status=503)(environ, start_response)
        if request.path == "/.well-known/openid-configuration":
            with self._lock:
                self.fetches["discovery"] += 1
            doc = {"issuer": self.url, "jwks_uri": self.jwks_uri, "response_types_supported": ["id_token"],
                   "subject_types_supported": ["public", "pairwise"],
                   "id_token_signing_alg_values_supported": ["RS256", "ES256"], **self.discovery_overrides}
            return _json(doc)(environ, start_response)
        if request.path == self.jwks_path:
            with self._lock:
                self.fetches["jwks"] += 1
                published = [dict(k.jwk) for k in self.keys]
            return _json({"keys": published})(environ, start_response)
        return Response("not found", status=404)(environ, start_response)


def _json(value: Any) -> Response:
    return Response(json.dumps(value), status=200, content_type="application/json")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@contextmanager
def running_oidc_issuer(audience: str = "agentgate", *, jwks_path: str = "/.well-known/jwks",
                        key_kinds: tuple[str, ...] = ("rsa",), host: str = "127.0.0.1") -> Iterator[OIDCIssuer]:
    """Serve an issuer on a background thread; the socket listens before this yields. Its URL is the
    issuer (`iss`), so AGENTGATE_OIDC_ISSUERS is `f"{issuer.url}={issuer.audience}"`."""
    holder: dict[str, OIDCIssuer] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return holder["issuer"].wsgi(environ, start_response)

    server = make_server(host, 0, app, threaded=True, request_handler=_QuietHandler)
    issuer = OIDCIssuer(url=f"http://{host}:{server.server_port}", audience=audience, jwks_path=jwks_path)
    for kind in key_kinds:
        issuer.add_key(kind)
    holder["issuer"] = issuer
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"oidc-issuer:{server.server_port}", daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        thread.join()
        server.server_close()

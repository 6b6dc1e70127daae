"""LogoutConfig: defaults, ``from_env`` parsing, validation errors naming the variable."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from logout_middleware.config import ConfigError, LogoutConfig


def test_a_non_default_session_cookie_is_the_only_one_expired_by_default() -> None:
    """Django's ``sessionid`` alone: no stray ``session`` cookie is expired."""
    config = LogoutConfig(session_cookie="sessionid")
    assert config.expired_cookies == ("sessionid",)
    assert LogoutConfig(session_cookie="sessionid", cookies=("csrftoken",)).expired_cookies == (
        "csrftoken",
        "sessionid",
    )


def test_defaults() -> None:
    config = LogoutConfig()
    assert config.path == "/logout"
    assert config.methods == ("POST",)
    assert config.on_get == "405"
    assert config.next_param == "next"
    assert config.next_uri == "/"
    assert config.allowed_hosts == ()
    assert config.trusted_origins == ()
    assert config.cookies == ()
    assert config.cookie_path == "/"
    assert config.cookie_domain is None
    assert config.cookie_secure is None
    assert config.cookie_samesite is None
    assert config.clear_site_data == ()
    assert config.redis_url is None
    assert config.redis_timeout == 1.0
    assert config.session_cookie == "session"
    assert config.session_keys == ("session:{sid}",)
    assert config.session_secret is None
    assert config.session_salt == "flask-session"
    assert config.revoke_tokens is True
    assert config.token_ttl == 3600
    assert config.token_max_ttl == 30 * 24 * 3600
    assert config.denylist_prefix == "logout:revoked:"
    assert config.events_stream == "logout:events"
    assert config.events_maxlen == 100_000
    assert config.on_store_error == "fail"
    assert config.on_check_error == "allow"
    assert config.max_body == 64 * 1024
    assert config.expired_cookies == ("session",)
    assert config.revocation_cache is True
    assert config.everywhere_path is None
    assert config.session_subject is None
    assert config.session_format == "auto"
    assert config.session_ttl == 31 * 24 * 3600
    assert config.key_prefix == "logout:"
    assert config.jwt_key is None
    assert config.jwks_url is None
    assert config.jwt_algorithms == ()
    assert config.jwt_leeway == 60


@pytest.mark.parametrize(
    ("settings", "algorithms"),
    [
        ({"jwt_key": "s3cret"}, ("HS256",)),
        (
            {"jwt_key": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----"},
            ("RS256", "ES256"),
        ),
        ({"jwks_url": "https://id.example.com/jwks"}, ("RS256", "ES256")),
        ({"jwt_key": "s3cret", "jwt_algorithms": ("HS512",)}, ("HS512",)),
    ],
    ids=["hmac-secret", "pem-key", "jwks", "explicit"],
)
def test_jwt_algorithms_follow_the_key(
    settings: dict[str, Any], algorithms: tuple[str, ...]
) -> None:
    """Without LOGOUT_JWT_ALGORITHMS the key's kind decides; an HMAC algorithm is never
    paired with a public key (the RS256/HS256 confusion)."""
    assert LogoutConfig(**settings).jwt_algorithms == algorithms


def test_jwt_key_hidden_from_repr() -> None:
    assert "s3cret" not in repr(LogoutConfig(jwt_key="s3cret"))


def test_empty_stream_runs_without_the_cache() -> None:
    """The cache follows the audit stream: with no stream, there is no cache (and no error)."""
    config = LogoutConfig(events_stream="")
    assert config.revocation_cache is True
    assert config.events_stream == ""


def test_from_empty_environ_equals_defaults() -> None:
    assert LogoutConfig.from_env({}) == LogoutConfig()


def test_from_env_ignores_unrelated_and_empty_variables() -> None:
    environ = {"PATH": "/usr/bin", "LOGOUT_PATH": "", "LOGOUT_TOKEN_TTL": "   "}
    assert LogoutConfig.from_env(environ) == LogoutConfig()


def test_frozen() -> None:
    config = LogoutConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.path = "/other"  # type: ignore[misc]


def test_secret_not_in_repr() -> None:
    config = LogoutConfig(session_secret="hunter2-secret")
    assert "hunter2-secret" not in repr(config)


def test_sequences_stored_as_tuples() -> None:
    config = LogoutConfig(
        methods=["post", "delete"],  # type: ignore[arg-type]
        cookies=iter(["a", "b"]),  # type: ignore[arg-type]
        allowed_hosts=["Example.COM:8443"],  # type: ignore[arg-type]
    )
    assert config.methods == ("POST", "DELETE")
    assert config.cookies == ("a", "b")
    assert config.allowed_hosts == ("example.com:8443",)


# -- from_env: every variable ----------------------------------------------------------

FROM_ENV_CASES: list[tuple[str, str, str, object]] = [
    ("LOGOUT_PATH", "/auth/logout", "path", "/auth/logout"),
    ("LOGOUT_PATH", "  /bye  ", "path", "/bye"),
    ("LOGOUT_METHODS", "POST,DELETE", "methods", ("POST", "DELETE")),
    ("LOGOUT_METHODS", " post , delete ,", "methods", ("POST", "DELETE")),
    ("LOGOUT_GET", "confirm", "on_get", "confirm"),
    ("LOGOUT_GET", "405", "on_get", "405"),
    ("LOGOUT_NEXT_PARAM", "return_to", "next_param", "return_to"),
    ("LOGOUT_NEXT_URI", "/goodbye", "next_uri", "/goodbye"),
    ("LOGOUT_NEXT_URI", "https://example.com/bye", "next_uri", "https://example.com/bye"),
    (
        "LOGOUT_ALLOWED_HOSTS",
        "Accounts.Example.com, cdn.example.com:8443",
        "allowed_hosts",
        ("accounts.example.com", "cdn.example.com:8443"),
    ),
    (
        "LOGOUT_TRUSTED_ORIGINS",
        "https://App.example.com/,http://localhost:3000",
        "trusted_origins",
        ("https://app.example.com", "http://localhost:3000"),
    ),
    (
        "LOGOUT_COOKIES",
        "session,remember_me,csrftoken",
        "cookies",
        ("session", "remember_me", "csrftoken"),
    ),
    ("LOGOUT_COOKIE_PATH", "/app", "cookie_path", "/app"),
    ("LOGOUT_COOKIE_DOMAIN", ".example.com", "cookie_domain", ".example.com"),
    ("LOGOUT_COOKIE_SECURE", "auto", "cookie_secure", None),
    ("LOGOUT_COOKIE_SECURE", "AUTO", "cookie_secure", None),
    ("LOGOUT_COOKIE_SECURE", "true", "cookie_secure", True),
    ("LOGOUT_COOKIE_SECURE", "1", "cookie_secure", True),
    ("LOGOUT_COOKIE_SECURE", "false", "cookie_secure", False),
    ("LOGOUT_COOKIE_SECURE", "0", "cookie_secure", False),
    ("LOGOUT_COOKIE_SAMESITE", "Strict", "cookie_samesite", "Strict"),
    ("LOGOUT_COOKIE_SAMESITE", "lax", "cookie_samesite", "Lax"),
    ("LOGOUT_COOKIE_SAMESITE", "none", "cookie_samesite", "None"),
    ("LOGOUT_CLEAR_SITE_DATA", "cookies, storage", "clear_site_data", ("cookies", "storage")),
    ("LOGOUT_CLEAR_SITE_DATA", "*", "clear_site_data", ("*",)),
    ("LOGOUT_REDIS_URL", "redis://localhost:6379/0", "redis_url", "redis://localhost:6379/0"),
    ("LOGOUT_REDIS_URL", "rediss://cache:6380/1", "redis_url", "rediss://cache:6380/1"),
    ("LOGOUT_REDIS_URL", "unix:///tmp/redis.sock", "redis_url", "unix:///tmp/redis.sock"),
    (
        "LOGOUT_REDIS_URL",
        "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/2",
        "redis_url",
        "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/2",
    ),
    ("LOGOUT_REDIS_CLUSTER", "true", "redis_cluster", True),
    ("LOGOUT_REDIS_TIMEOUT", "0.25", "redis_timeout", 0.25),
    ("LOGOUT_REDIS_TIMEOUT", "60", "redis_timeout", 60.0),
    ("LOGOUT_SESSION_COOKIE", "sid", "session_cookie", "sid"),
    (
        "LOGOUT_SESSION_KEYS",
        "session:{sid},starsessions.{sid}",
        "session_keys",
        ("session:{sid}", "starsessions.{sid}"),
    ),
    ("LOGOUT_SESSION_SECRET", "s3cret", "session_secret", "s3cret"),
    ("LOGOUT_SESSION_SALT", "my-salt", "session_salt", "my-salt"),
    ("LOGOUT_REVOKE_TOKENS", "false", "revoke_tokens", False),
    ("LOGOUT_REVOKE_TOKENS", "0", "revoke_tokens", False),
    ("LOGOUT_REVOKE_TOKENS", "true", "revoke_tokens", True),
    ("LOGOUT_REVOKE_TOKENS", "1", "revoke_tokens", True),
    ("LOGOUT_REVOKE_TOKENS", "FALSE", "revoke_tokens", False),
    ("LOGOUT_REVOCATION_CACHE", "true", "revocation_cache", True),
    ("LOGOUT_REVOCATION_CACHE", "0", "revocation_cache", False),
    ("LOGOUT_TOKEN_TTL", "120", "token_ttl", 120),
    ("LOGOUT_TOKEN_MAX_TTL", "86400", "token_max_ttl", 86400),
    ("LOGOUT_DENYLIST_PREFIX", "deny:", "denylist_prefix", "deny:"),
    ("LOGOUT_EVENTS_STREAM", "audit:logout", "events_stream", "audit:logout"),
    ("LOGOUT_EVENTS_MAXLEN", "500", "events_maxlen", 500),
    ("LOGOUT_ON_STORE_ERROR", "succeed", "on_store_error", "succeed"),
    ("LOGOUT_ON_CHECK_ERROR", "deny", "on_check_error", "deny"),
    ("LOGOUT_MAX_BODY", "1024", "max_body", 1024),
    ("LOGOUT_EVERYWHERE_PATH", "/logout/everywhere", "everywhere_path", "/logout/everywhere"),
    ("LOGOUT_SESSION_SUBJECT", "_user_id", "session_subject", "_user_id"),
    ("LOGOUT_SESSION_SUBJECT", "user.id", "session_subject", "user.id"),
    ("LOGOUT_SESSION_FORMAT", "pickle", "session_format", "pickle"),
    ("LOGOUT_SESSION_TTL", "86400", "session_ttl", 86400),
    ("LOGOUT_KEY_PREFIX", "app:logout:", "key_prefix", "app:logout:"),
    ("LOGOUT_JWT_KEY", "s3cret", "jwt_key", "s3cret"),
    ("LOGOUT_JWKS_URL", "https://id.example.com/jwks", "jwks_url", "https://id.example.com/jwks"),
    ("LOGOUT_JWT_ALGORITHMS", "RS256,ES256", "jwt_algorithms", ("RS256", "ES256")),
    ("LOGOUT_JWT_ISSUER", "https://id.example.com", "jwt_issuer", "https://id.example.com"),
    ("LOGOUT_JWT_AUDIENCE", "api,web", "jwt_audience", ("api", "web")),
    ("LOGOUT_JWT_LEEWAY", "5", "jwt_leeway", 5),
    ("LOGOUT_SCHEME_PARAM", "signout", "scheme_param", "signout"),
    ("LOGOUT_SESSION_IMPERSONATOR", "hijack_history", "session_impersonator", "hijack_history"),
    ("LOGOUT_SESSION_ORIGINAL", "impersonation.sid", "session_original", "impersonation.sid"),
    ("LOGOUT_IMPERSONATION_PATH", "/impersonate/stop", "impersonation_path", "/impersonate/stop"),
    ("LOGOUT_OIDC_ISSUER", "https://id.example.com", "oidc_issuer", "https://id.example.com"),
    ("LOGOUT_OIDC_CLIENT_ID", "app", "oidc_client_id", "app"),
    ("LOGOUT_SESSION_OIDC_SID", "user.sid", "session_oidc_sid", "user.sid"),
    ("LOGOUT_SESSION_ID_TOKEN", "id_token", "session_id_token", "id_token"),
    ("LOGOUT_OIDC_END_SESSION", "false", "oidc_end_session", False),
    (
        "LOGOUT_TOKEN_KEYS",
        "fastapi_users_token:{token}, app:token:{token}:v1",
        "token_keys",
        ("fastapi_users_token:{token}", "app:token:{token}:v1"),
    ),
    ("LOGOUT_TOKEN_COOKIE", "fastapiusersauth", "token_cookie", "fastapiusersauth"),
    ("LOGOUT_BACKCHANNEL_PATH", "/oidc/logout", "backchannel_path", "/oidc/logout"),
]


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"backchannel_path": "/oidc/logout"}, "LOGOUT_OIDC_ISSUER"),
        (
            {"backchannel_path": "/oidc/logout", "oidc_issuer": "https://id.example.com"},
            "LOGOUT_OIDC_CLIENT_ID",
        ),
        ({"oidc_end_session": True, "oidc_client_id": "app"}, "LOGOUT_OIDC_ISSUER"),
        ({"oidc_issuer": "ftp://id.example.com"}, "LOGOUT_OIDC_ISSUER"),
        (
            {
                "backchannel_path": "/logout",
                "oidc_issuer": "https://id.example.com",
                "oidc_client_id": "app",
            },
            "LOGOUT_BACKCHANNEL_PATH",
        ),
        ({"session_oidc_sid": "user..sid"}, "LOGOUT_SESSION_OIDC_SID"),
    ],
    ids=["no-issuer", "no-client", "end-session-no-issuer", "bad-issuer", "same-path", "bad-path"],
)
def test_oidc_settings_checked(settings: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}: "):
        LogoutConfig(**settings)


def test_oidc_settings_from_env() -> None:
    config = LogoutConfig.from_env(
        {
            "LOGOUT_BACKCHANNEL_PATH": "/oidc/backchannel-logout",
            "LOGOUT_OIDC_ISSUER": "http://127.0.0.1:9000",
            "LOGOUT_OIDC_CLIENT_ID": "app",
            "LOGOUT_OIDC_END_SESSION": "true",
        }
    )
    assert (config.backchannel_path, config.oidc_end_session) == ("/oidc/backchannel-logout", True)


#: Settings a variable cannot go without.
COMPANIONS = {
    "LOGOUT_REDIS_CLUSTER": {"LOGOUT_REDIS_URL": "redis://node-1:7000"},
    "LOGOUT_BACKCHANNEL_PATH": {
        "LOGOUT_OIDC_ISSUER": "https://id.example.com",
        "LOGOUT_OIDC_CLIENT_ID": "app",
    },
}


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    FROM_ENV_CASES,
    ids=[f"{v}={raw.strip()}" for v, raw, _, _ in FROM_ENV_CASES],
)
def test_from_env_parses(variable: str, raw: str, field: str, expected: object) -> None:
    config = LogoutConfig.from_env({variable: raw, **COMPANIONS.get(variable, {})})
    value = getattr(config, field)
    assert value == expected
    assert type(value) is type(expected)


def test_from_env_covers_every_field() -> None:
    """Every field has a variable, and the table above exercises each of them."""
    covered = {field for _, _, field, _ in FROM_ENV_CASES}
    assert covered == {f.name for f in dataclasses.fields(LogoutConfig)}


def test_get_variable_is_not_on_get() -> None:
    """The field ``on_get`` is read from LOGOUT_GET, not LOGOUT_ON_GET."""
    assert LogoutConfig.from_env({"LOGOUT_ON_GET": "confirm"}).on_get == "405"
    assert LogoutConfig.from_env({"LOGOUT_GET": "confirm"}).on_get == "confirm"


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGOUT_PATH", "/from-os-environ")
    monkeypatch.setenv("LOGOUT_TOKEN_TTL", "77")
    config = LogoutConfig.from_env()
    assert config.path == "/from-os-environ"
    assert config.token_ttl == 77


def test_from_env_many_variables_at_once() -> None:
    config = LogoutConfig.from_env(
        {
            "LOGOUT_PATH": "/bye",
            "LOGOUT_COOKIES": "a,b",
            "LOGOUT_SESSION_COOKIE": "sid",
            "LOGOUT_COOKIE_SECURE": "true",
            "LOGOUT_GET": "confirm",
        }
    )
    assert (config.path, config.cookies, config.session_cookie) == ("/bye", ("a", "b"), "sid")
    assert config.cookie_secure is True
    assert config.on_get == "confirm"
    assert config.expired_cookies == ("a", "b", "sid")


# -- overrides -------------------------------------------------------------------------


def test_overrides_win_over_environment() -> None:
    environ = {"LOGOUT_PATH": "/from-env", "LOGOUT_TOKEN_TTL": "10"}
    config = LogoutConfig.from_env(environ, path="/override", max_body=99)
    assert config.path == "/override"
    assert config.max_body == 99
    assert config.token_ttl == 10


def test_overrides_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"^LOGOUT_PATH: "):
        LogoutConfig.from_env({}, path="no-slash")


def test_override_unknown_field_is_type_error() -> None:
    with pytest.raises(TypeError):
        LogoutConfig.from_env({}, no_such_setting=1)


# -- expired_cookies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookies", "session_cookie", "expected"),
    [
        (("session",), "session", ("session",)),
        (("remember",), "session", ("remember", "session")),
        (("a", "b"), "sid", ("a", "b", "sid")),
        (("sid", "a"), "sid", ("sid", "a")),
        (("a", "a"), "sid", ("a", "sid")),
    ],
    ids=["same", "session-added", "session-added-last", "no-duplicate", "deduplicated"],
)
def test_expired_cookies_include_session_cookie(
    cookies: tuple[str, ...], session_cookie: str, expected: tuple[str, ...]
) -> None:
    config = LogoutConfig(cookies=cookies, session_cookie=session_cookie)
    assert config.expired_cookies == expected


# -- invalid values: from the environment ----------------------------------------------

INVALID_ENV: list[tuple[str, dict[str, str], str]] = [
    ("path-relative", {"LOGOUT_PATH": "logout"}, "LOGOUT_PATH"),
    ("path-double-slash", {"LOGOUT_PATH": "/a//logout"}, "LOGOUT_PATH"),
    ("path-query", {"LOGOUT_PATH": "/logout?x=1"}, "LOGOUT_PATH"),
    ("path-space", {"LOGOUT_PATH": "/log out"}, "LOGOUT_PATH"),
    ("methods-get", {"LOGOUT_METHODS": "POST,GET"}, "LOGOUT_METHODS"),
    ("methods-head", {"LOGOUT_METHODS": "HEAD"}, "LOGOUT_METHODS"),
    ("methods-not-token", {"LOGOUT_METHODS": "PO ST"}, "LOGOUT_METHODS"),
    ("methods-only-commas", {"LOGOUT_METHODS": ",,"}, "LOGOUT_METHODS"),
    ("get-unknown", {"LOGOUT_GET": "redirect"}, "LOGOUT_GET"),
    (
        "get-confirm-without-post",
        {"LOGOUT_GET": "confirm", "LOGOUT_METHODS": "DELETE"},
        "LOGOUT_GET",
    ),
    ("next-param-space", {"LOGOUT_NEXT_PARAM": "next url"}, "LOGOUT_NEXT_PARAM"),
    ("next-param-equals", {"LOGOUT_NEXT_PARAM": "a=b"}, "LOGOUT_NEXT_PARAM"),
    ("next-uri-relative", {"LOGOUT_NEXT_URI": "home"}, "LOGOUT_NEXT_URI"),
    ("next-uri-scheme-relative", {"LOGOUT_NEXT_URI": "//evil.example"}, "LOGOUT_NEXT_URI"),
    ("next-uri-javascript", {"LOGOUT_NEXT_URI": "javascript:alert(1)"}, "LOGOUT_NEXT_URI"),
    ("next-uri-userinfo", {"LOGOUT_NEXT_URI": "https://a@evil.example/"}, "LOGOUT_NEXT_URI"),
    ("next-uri-ftp", {"LOGOUT_NEXT_URI": "ftp://example.com/"}, "LOGOUT_NEXT_URI"),
    ("allowed-hosts-url", {"LOGOUT_ALLOWED_HOSTS": "https://example.com"}, "LOGOUT_ALLOWED_HOSTS"),
    ("allowed-hosts-path", {"LOGOUT_ALLOWED_HOSTS": "example.com/x"}, "LOGOUT_ALLOWED_HOSTS"),
    ("allowed-hosts-wildcard", {"LOGOUT_ALLOWED_HOSTS": "*.example.com"}, "LOGOUT_ALLOWED_HOSTS"),
    ("trusted-origins-host", {"LOGOUT_TRUSTED_ORIGINS": "example.com"}, "LOGOUT_TRUSTED_ORIGINS"),
    ("trusted-origins-ftp", {"LOGOUT_TRUSTED_ORIGINS": "ftp://x.com"}, "LOGOUT_TRUSTED_ORIGINS"),
    (
        "trusted-origins-path",
        {"LOGOUT_TRUSTED_ORIGINS": "https://x.com/app"},
        "LOGOUT_TRUSTED_ORIGINS",
    ),
    ("cookies-bad-name", {"LOGOUT_COOKIES": "ses sion"}, "LOGOUT_COOKIES"),
    ("cookies-semicolon", {"LOGOUT_COOKIES": "a;b"}, "LOGOUT_COOKIES"),
    ("cookie-path-relative", {"LOGOUT_COOKIE_PATH": "app"}, "LOGOUT_COOKIE_PATH"),
    ("cookie-domain-bad", {"LOGOUT_COOKIE_DOMAIN": "exa mple.com"}, "LOGOUT_COOKIE_DOMAIN"),
    ("cookie-domain-url", {"LOGOUT_COOKIE_DOMAIN": "https://example.com"}, "LOGOUT_COOKIE_DOMAIN"),
    ("cookie-secure-maybe", {"LOGOUT_COOKIE_SECURE": "maybe"}, "LOGOUT_COOKIE_SECURE"),
    ("cookie-samesite-bad", {"LOGOUT_COOKIE_SAMESITE": "sometimes"}, "LOGOUT_COOKIE_SAMESITE"),
    ("clear-site-data-bad", {"LOGOUT_CLEAR_SITE_DATA": "cookies,cookie"}, "LOGOUT_CLEAR_SITE_DATA"),
    ("redis-url-http", {"LOGOUT_REDIS_URL": "http://localhost:6379"}, "LOGOUT_REDIS_URL"),
    ("redis-url-bare", {"LOGOUT_REDIS_URL": "localhost:6379"}, "LOGOUT_REDIS_URL"),
    ("sentinel-no-service", {"LOGOUT_REDIS_URL": "redis+sentinel://s1:26379"}, "LOGOUT_REDIS_URL"),
    ("sentinel-no-port", {"LOGOUT_REDIS_URL": "redis+sentinel://s1/m"}, "LOGOUT_REDIS_URL"),
    ("sentinel-bad-db", {"LOGOUT_REDIS_URL": "redis+sentinel://s1:1/m/x"}, "LOGOUT_REDIS_URL"),
    ("cluster-without-url", {"LOGOUT_REDIS_CLUSTER": "true"}, "LOGOUT_REDIS_CLUSTER"),
    (
        "cluster-on-unix-socket",
        {"LOGOUT_REDIS_CLUSTER": "true", "LOGOUT_REDIS_URL": "unix:///tmp/r.sock"},
        "LOGOUT_REDIS_URL",
    ),
    (
        "cluster-and-sentinel",
        {"LOGOUT_REDIS_CLUSTER": "1", "LOGOUT_REDIS_URL": "redis+sentinel://s:1/m"},
        "LOGOUT_REDIS_URL",
    ),
    ("redis-cluster-maybe", {"LOGOUT_REDIS_CLUSTER": "maybe"}, "LOGOUT_REDIS_CLUSTER"),
    ("stream-brace-outside-tag", {"LOGOUT_EVENTS_STREAM": "a{}b}"}, "LOGOUT_EVENTS_STREAM"),
    ("key-prefix-hash-tag", {"LOGOUT_KEY_PREFIX": "{logout}:"}, "LOGOUT_KEY_PREFIX"),
    ("redis-timeout-text", {"LOGOUT_REDIS_TIMEOUT": "fast"}, "LOGOUT_REDIS_TIMEOUT"),
    ("redis-timeout-zero", {"LOGOUT_REDIS_TIMEOUT": "0"}, "LOGOUT_REDIS_TIMEOUT"),
    ("redis-timeout-negative", {"LOGOUT_REDIS_TIMEOUT": "-1"}, "LOGOUT_REDIS_TIMEOUT"),
    ("redis-timeout-too-long", {"LOGOUT_REDIS_TIMEOUT": "61"}, "LOGOUT_REDIS_TIMEOUT"),
    ("redis-timeout-nan", {"LOGOUT_REDIS_TIMEOUT": "nan"}, "LOGOUT_REDIS_TIMEOUT"),
    ("redis-timeout-inf", {"LOGOUT_REDIS_TIMEOUT": "inf"}, "LOGOUT_REDIS_TIMEOUT"),
    ("session-cookie-bad", {"LOGOUT_SESSION_COOKIE": "my session"}, "LOGOUT_SESSION_COOKIE"),
    ("session-keys-no-sid", {"LOGOUT_SESSION_KEYS": "session:"}, "LOGOUT_SESSION_KEYS"),
    ("session-keys-only-sid", {"LOGOUT_SESSION_KEYS": "{sid}"}, "LOGOUT_SESSION_KEYS"),
    ("session-keys-only-commas", {"LOGOUT_SESSION_KEYS": ","}, "LOGOUT_SESSION_KEYS"),
    ("revoke-tokens-maybe", {"LOGOUT_REVOKE_TOKENS": "maybe"}, "LOGOUT_REVOKE_TOKENS"),
    ("revoke-tokens-2", {"LOGOUT_REVOKE_TOKENS": "2"}, "LOGOUT_REVOKE_TOKENS"),
    ("revocation-cache-maybe", {"LOGOUT_REVOCATION_CACHE": "maybe"}, "LOGOUT_REVOCATION_CACHE"),
    ("token-ttl-text", {"LOGOUT_TOKEN_TTL": "an hour"}, "LOGOUT_TOKEN_TTL"),
    ("token-ttl-fraction", {"LOGOUT_TOKEN_TTL": "1.5"}, "LOGOUT_TOKEN_TTL"),
    ("token-ttl-zero", {"LOGOUT_TOKEN_TTL": "0"}, "LOGOUT_TOKEN_TTL"),
    ("token-ttl-negative", {"LOGOUT_TOKEN_TTL": "-5"}, "LOGOUT_TOKEN_TTL"),
    ("token-max-ttl-zero", {"LOGOUT_TOKEN_MAX_TTL": "0"}, "LOGOUT_TOKEN_MAX_TTL"),
    ("token-max-ttl-text", {"LOGOUT_TOKEN_MAX_TTL": "30d"}, "LOGOUT_TOKEN_MAX_TTL"),
    ("events-maxlen-zero", {"LOGOUT_EVENTS_MAXLEN": "0"}, "LOGOUT_EVENTS_MAXLEN"),
    ("events-maxlen-text", {"LOGOUT_EVENTS_MAXLEN": "many"}, "LOGOUT_EVENTS_MAXLEN"),
    ("on-store-error-bad", {"LOGOUT_ON_STORE_ERROR": "ignore"}, "LOGOUT_ON_STORE_ERROR"),
    ("on-check-error-bad", {"LOGOUT_ON_CHECK_ERROR": "maybe"}, "LOGOUT_ON_CHECK_ERROR"),
    ("max-body-zero", {"LOGOUT_MAX_BODY": "0"}, "LOGOUT_MAX_BODY"),
    ("max-body-text", {"LOGOUT_MAX_BODY": "64k"}, "LOGOUT_MAX_BODY"),
]


@pytest.mark.parametrize(
    ("environ", "variable"),
    [(environ, variable) for _, environ, variable in INVALID_ENV],
    ids=[case_id for case_id, _, _ in INVALID_ENV],
)
def test_invalid_env_value_names_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LogoutConfig.from_env(environ)
    assert str(caught.value).startswith(f"{variable}: ")


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="LOGOUT_MAX_BODY"):
        LogoutConfig.from_env({"LOGOUT_MAX_BODY": "0"})


# -- invalid values: keyword arguments -------------------------------------------------

INVALID_KWARGS: list[tuple[str, dict[str, Any], str]] = [
    ("methods-one-string", {"methods": "POST"}, "LOGOUT_METHODS"),
    ("cookies-one-string", {"cookies": "session"}, "LOGOUT_COOKIES"),
    ("allowed-hosts-one-string", {"allowed_hosts": "example.com"}, "LOGOUT_ALLOWED_HOSTS"),
    ("trusted-origins-one-string", {"trusted_origins": "https://a.b"}, "LOGOUT_TRUSTED_ORIGINS"),
    ("clear-site-data-one-string", {"clear_site_data": "cookies"}, "LOGOUT_CLEAR_SITE_DATA"),
    ("session-keys-one-string", {"session_keys": "session:{sid}"}, "LOGOUT_SESSION_KEYS"),
    ("methods-empty", {"methods": ()}, "LOGOUT_METHODS"),
    ("session-keys-empty", {"session_keys": ()}, "LOGOUT_SESSION_KEYS"),
    ("session-secret-empty", {"session_secret": ""}, "LOGOUT_SESSION_SECRET"),
    ("denylist-prefix-empty", {"denylist_prefix": ""}, "LOGOUT_DENYLIST_PREFIX"),
    ("token-ttl-bool", {"token_ttl": True}, "LOGOUT_TOKEN_TTL"),
    ("token-ttl-float", {"token_ttl": 1.5}, "LOGOUT_TOKEN_TTL"),
    ("max-body-string", {"max_body": "1024"}, "LOGOUT_MAX_BODY"),
    ("on-get-bad", {"on_get": "GET"}, "LOGOUT_GET"),
    ("everywhere-path-relative", {"everywhere_path": "everywhere"}, "LOGOUT_EVERYWHERE_PATH"),
    ("everywhere-path-is-logout", {"everywhere_path": "/logout"}, "LOGOUT_EVERYWHERE_PATH"),
    ("session-subject-empty-part", {"session_subject": "user..id"}, "LOGOUT_SESSION_SUBJECT"),
    ("session-format-bad", {"session_format": "yaml"}, "LOGOUT_SESSION_FORMAT"),
    ("session-ttl-zero", {"session_ttl": 0}, "LOGOUT_SESSION_TTL"),
    ("key-prefix-empty", {"key_prefix": ""}, "LOGOUT_KEY_PREFIX"),
    ("jwt-key-empty", {"jwt_key": ""}, "LOGOUT_JWT_KEY"),
    ("jwt-key-and-jwks", {"jwt_key": "k", "jwks_url": "https://x/jwks"}, "LOGOUT_JWKS_URL"),
    ("jwks-url-not-http", {"jwks_url": "file:///etc/jwks"}, "LOGOUT_JWKS_URL"),
    ("jwt-algorithm-none", {"jwt_key": "k", "jwt_algorithms": ("none",)}, "LOGOUT_JWT_ALGORITHMS"),
    (
        "jwt-hmac-with-pem",
        {
            "jwt_key": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----",
            "jwt_algorithms": ("HS256",),
        },
        "LOGOUT_JWT_ALGORITHMS",
    ),
    ("jwt-leeway-negative", {"jwt_leeway": -1}, "LOGOUT_JWT_LEEWAY"),
    ("scheme-param-is-next", {"scheme_param": "next"}, "LOGOUT_SCHEME_PARAM"),
    ("redis-url-port-not-a-number", {"redis_url": "redis://localhost:abc/0"}, "LOGOUT_REDIS_URL"),
    ("scheme-param-bad", {"scheme_param": "a b"}, "LOGOUT_SCHEME_PARAM"),
    ("impersonator-empty-part", {"session_impersonator": "a..b"}, "LOGOUT_SESSION_IMPERSONATOR"),
    ("original-space", {"session_original": "a b"}, "LOGOUT_SESSION_ORIGINAL"),
    ("impersonation-path-relative", {"impersonation_path": "stop"}, "LOGOUT_IMPERSONATION_PATH"),
    (
        "impersonation-path-is-logout",
        {"impersonation_path": "/logout"},
        "LOGOUT_IMPERSONATION_PATH",
    ),
    ("on-store-error-bad", {"on_store_error": "retry"}, "LOGOUT_ON_STORE_ERROR"),
    ("redis-timeout-zero", {"redis_timeout": 0}, "LOGOUT_REDIS_TIMEOUT"),
    ("cookie-samesite-bad", {"cookie_samesite": "always"}, "LOGOUT_COOKIE_SAMESITE"),
    ("session-cookie-bad", {"session_cookie": "a=b"}, "LOGOUT_SESSION_COOKIE"),
]


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [(kwargs, variable) for _, kwargs, variable in INVALID_KWARGS],
    ids=[case_id for case_id, _, _ in INVALID_KWARGS],
)
def test_invalid_keyword_names_variable(kwargs: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LogoutConfig(**kwargs)
    assert str(caught.value).startswith(f"{variable}: ")


def test_confirm_allowed_when_post_among_methods() -> None:
    config = LogoutConfig(on_get="confirm", methods=("DELETE", "POST"))
    assert config.on_get == "confirm"
    assert config.methods == ("DELETE", "POST")


@pytest.mark.parametrize(
    "domain",
    ["example.com", ".example.com", "Example.COM"],
    ids=["plain", "leading-dot", "upper-case"],
)
def test_cookie_domain_accepted(domain: str) -> None:
    """Domain names are case-insensitive (RFC 6265 section 5.2.3), as allowed_hosts are."""
    config = LogoutConfig(cookie_domain=domain)
    assert config.cookie_domain in (domain, domain.lower())


def test_cookie_domain_with_port_refused() -> None:
    """A Domain attribute never has a port: browsers ignore such a Set-Cookie, so the
    cookie would silently survive the logout."""
    with pytest.raises(ConfigError, match=r"^LOGOUT_COOKIE_DOMAIN: "):
        LogoutConfig(cookie_domain="example.com:8080")


def test_events_stream_empty_writes_none() -> None:
    """``events_stream=""`` disables the audit stream (the field's documented meaning)."""
    assert LogoutConfig(events_stream="").events_stream == ""


def test_events_stream_env_empty_writes_none() -> None:
    """The field's doc reads "LOGOUT_EVENTS_STREAM: ...; empty to write none", but
    from_env treats an empty variable as unset, so the stream cannot be disabled from
    the environment."""
    assert LogoutConfig.from_env({"LOGOUT_EVENTS_STREAM": ""}).events_stream == ""


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"denylist_prefix": "logout:"}, "LOGOUT_DENYLIST_PREFIX"),
        ({"denylist_prefix": "logout:revoked-session:"}, "LOGOUT_DENYLIST_PREFIX"),
        ({"events_stream": "logout:revoked:audit"}, "LOGOUT_DENYLIST_PREFIX"),
        ({"key_prefix": "logout:revoked:"}, "LOGOUT_DENYLIST_PREFIX"),
    ],
    ids=["denylist-covers-all", "denylist-is-tombstones", "stream-under-denylist", "same-prefix"],
)
def test_overlapping_key_spaces_refused(settings: dict[str, Any], variable: str) -> None:
    """The revocation cache loads each kind of key by its prefix: prefixes that overlap
    would make one kind read as another, so they stop the app at start-up."""
    with pytest.raises(ConfigError, match=rf"^{variable}: .* overlaps "):
        LogoutConfig(**settings)


def test_fastapi_example_stops_at_start_up_on_a_bad_variable() -> None:
    """Adopted as the README shows (``config=LogoutConfig.from_env()`` in
    ``add_middleware``), a bad value stops uvicorn at start-up naming the variable,
    instead of a FastAPI app that starts and answers every request with a 500."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "LOGOUT_REDIS_TIMEOUT": "abc", "LOGOUT_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", "0"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "LOGOUT_REDIS_TIMEOUT: must be a number of seconds" in done.stderr


# -- token records: LOGOUT_TOKEN_KEYS and LOGOUT_TOKEN_COOKIE ----------------------------


def test_token_settings_default_to_none() -> None:
    config = LogoutConfig()
    assert config.token_keys == ()
    assert config.token_cookie is None
    assert config.expired_cookies == ("session",)


def test_token_settings_accept_fastapi_users_names() -> None:
    config = LogoutConfig.from_env(
        {
            "LOGOUT_TOKEN_KEYS": "fastapi_users_token:{token}",
            "LOGOUT_TOKEN_COOKIE": "fastapiusersauth",
            "LOGOUT_SESSION_KEYS": "session:{sid}",
        }
    )
    assert config.token_keys == ("fastapi_users_token:{token}",)
    assert config.token_cookie == "fastapiusersauth"
    # Our own words may appear after a prefix of the app's.
    assert LogoutConfig(token_keys=("app:logout:{token}",)).token_keys == ("app:logout:{token}",)


INVALID_TOKEN_SETTINGS: list[tuple[str, dict[str, str], str]] = [
    ("no-placeholder", {"LOGOUT_TOKEN_KEYS": "fastapi_users_token:"}, "needs a constant prefix"),
    ("session-placeholder", {"LOGOUT_TOKEN_KEYS": "token:{sid}"}, "needs a constant prefix"),
    ("only-placeholder", {"LOGOUT_TOKEN_KEYS": "{token}"}, "needs a constant prefix"),
    ("no-prefix", {"LOGOUT_TOKEN_KEYS": "{token}:record"}, "needs a constant prefix"),
    ("unclosed", {"LOGOUT_TOKEN_KEYS": "token:{token"}, "needs a constant prefix"),
    ("two-placeholders", {"LOGOUT_TOKEN_KEYS": "t:{token}:{token}"}, "malformed"),
    ("other-brace", {"LOGOUT_TOKEN_KEYS": "t:{token}:{user}"}, "malformed"),
    ("stray-brace", {"LOGOUT_TOKEN_KEYS": "t}:{token}"}, "malformed"),
    ("space", {"LOGOUT_TOKEN_KEYS": "my token:{token}"}, "malformed"),
    ("non-ascii", {"LOGOUT_TOKEN_KEYS": "jeton\u00e9:{token}"}, "malformed"),
    ("in-key-prefix", {"LOGOUT_TOKEN_KEYS": "logout:tokens:{token}"}, "'logout:' "),
    ("in-denylist", {"LOGOUT_TOKEN_KEYS": "logout:revoked:{token}"}, "LOGOUT_DENYLIST_PREFIX"),
    ("prefix-of-ours", {"LOGOUT_TOKEN_KEYS": "log{token}"}, "overlaps"),
    (
        "in-custom-prefix",
        {"LOGOUT_KEY_PREFIX": "mw:", "LOGOUT_TOKEN_KEYS": "mw:token:{token}"},
        "LOGOUT_KEY_PREFIX",
    ),
    (
        "in-stream",
        {"LOGOUT_EVENTS_STREAM": "audit:logouts", "LOGOUT_TOKEN_KEYS": "audit:{token}"},
        "LOGOUT_EVENTS_STREAM",
    ),
    ("cookie-bad-name", {"LOGOUT_TOKEN_COOKIE": "fastapi users auth"}, "not a valid cookie"),
    ("cookie-is-session", {"LOGOUT_TOKEN_COOKIE": "session"}, "LOGOUT_SESSION_COOKIE"),
    (
        "cookie-is-custom-session",
        {"LOGOUT_SESSION_COOKIE": "sid", "LOGOUT_TOKEN_COOKIE": "sid"},
        "must differ",
    ),
]


@pytest.mark.parametrize(
    ("environ", "message"),
    [(environ, message) for _, environ, message in INVALID_TOKEN_SETTINGS],
    ids=[case_id for case_id, _, _ in INVALID_TOKEN_SETTINGS],
)
def test_invalid_token_settings_stop_start_up_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    variable = "LOGOUT_TOKEN_COOKIE" if "LOGOUT_TOKEN_COOKIE" in environ else "LOGOUT_TOKEN_KEYS"
    with pytest.raises(ConfigError) as caught:
        LogoutConfig.from_env(environ)
    assert str(caught.value).startswith(f"{variable}: ")
    assert message in str(caught.value)


def test_token_keys_given_as_one_string_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^LOGOUT_TOKEN_KEYS: give a sequence"):
        LogoutConfig(token_keys="fastapi_users_token:{token}")  # type: ignore[arg-type]

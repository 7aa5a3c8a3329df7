"""What a person does with a browser against Keycloak: follow the emailed
set-password link, then sign in to the tenant's app (authorization code with
PKCE). Used by the integration and end-to-end tests."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from libs.devstack.keycloak import KeycloakServer

SET_PASSWORD_LINK = re.compile(r"https?://\S+/login-actions/action-token\?\S+")


class SignInRefused(AssertionError):
    """Keycloak did not sign the user in; the message is what it showed or answered."""


def _text(page: str) -> str:
    """A page's visible text, on one line."""
    return re.sub(r"\s+", " ", re.sub(r"(?s)<script.*?</script>|<[^>]+>", " ", page)).strip()


def _form(page: str) -> tuple[str, set[str]]:
    """The action of the page's form and the names of its inputs; an error page has none."""
    match = re.search(r'<form[^>]*action="([^"]+)"', page)
    if not match:
        raise SignInRefused(_text(page)[:1500])
    return html.unescape(match.group(1)), set(re.findall(r'<input[^>]*name="([^"]+)"', page))


def browser(*, follow_redirects: bool) -> httpx.Client:
    """An HTTP client that keeps cookies as a browser does.

    Keycloak's login-session cookies are `Secure` (browsers send them to
    http://127.0.0.1, a secure context) and `Version=1`; the standard
    library's cookie jar, which httpx uses, drops them for either reason. So
    this client keeps them itself (one realm per client: paths do not matter).
    """
    jar: dict[str, str] = {}

    def keep(response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, value = header.split(";", 1)[0].partition("=")
            jar[name.strip()] = value.strip()

    def send(request: httpx.Request) -> None:
        if jar:
            request.headers["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())

    return httpx.Client(
        follow_redirects=follow_redirects,
        timeout=30,
        event_hooks={"request": [send], "response": [keep]},
    )


def set_password_from_link(link: str, password: str) -> None:
    """What the admin does in a browser: open the emailed link, choose a password."""
    with browser(follow_redirects=True) as client:
        page = client.get(link)
        for _ in range(3):  # an info page ("click here to proceed") may come first
            if 'name="password-new"' in page.text:
                break
            proceed = re.search(r'href="([^"]*login-actions/[^"]+)"', page.text)
            assert proceed, _text(page.text)[:1500]
            page = client.get(urljoin(str(page.url), html.unescape(proceed.group(1))))
        action, _ = _form(page.text)
        done = client.post(
            urljoin(str(page.url), action), data={"password-new": password, "password-confirm": password}
        )
        assert done.status_code == 200
        assert "password-new" not in done.text, done.text[:2000]


def sign_in(
    keycloak: KeycloakServer,
    realm: str,
    client_id: str,
    secret: str,
    redirect_uri: str,
    email: str,
    password: str,
) -> dict[str, Any]:
    """The authorization code flow with PKCE, as the tenant's app runs it; returns the tokens.

    Raises `SignInRefused` with what Keycloak showed (an error page, the
    login form again) or answered (the token endpoint) when it refuses.
    """
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    oidc = f"{keycloak.url}/realms/{realm}/protocol/openid-connect"
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "openid email",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    with browser(follow_redirects=False) as client:
        page = client.get(f"{oidc}/auth?{query}", follow_redirects=True)
        for _ in range(2):  # with organizations on, Keycloak asks for the user name first
            action, inputs = _form(page.text)
            fields = {"username": email, "password": password}
            answer = client.post(
                urljoin(str(page.url), action), data={k: fields[k] for k in fields if k in inputs}
            )
            if answer.status_code == 302 or "password" in inputs:
                break
            page = answer
        if answer.status_code != 302:
            raise SignInRefused(_text(answer.text)[:1500])
        location = answer.headers["location"]
        assert location.startswith(redirect_uri), location
        code = parse_qs(urlsplit(location).query)["code"][0]
        tokens = client.post(
            f"{oidc}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "client_secret": secret,
                "code_verifier": verifier,
            },
        )
        if tokens.status_code != 200:
            raise SignInRefused(tokens.text)
        return dict(tokens.json())


def refresh(
    keycloak: KeycloakServer, realm: str, client_id: str, secret: str, refresh_token: str
) -> httpx.Response:
    """What the tenant's app does to keep a user signed in: the refresh-token grant."""
    return httpx.post(
        f"{keycloak.url}/realms/{realm}/protocol/openid-connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": secret,
        },
        timeout=30,
    )


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))

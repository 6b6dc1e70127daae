"""The example's two views: who is logged in (``GET /``) and Django's login (``POST
/login``). There is no logout view: ``POST /logout`` and ``POST /logout/everywhere`` are
answered by the middleware before Django sees them."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.middleware.csrf import get_token
from django.utils.html import escape

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Django example</title></head>
<body>
<h1>Django + Redis sessions + logout-middleware</h1>
{body}
</body></html>
"""

LOGIN_FORM = """<p id="user">Not logged in.</p>{error}
<form method="post" action="/login">
  <input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
  <label>User name <input name="username" required autocomplete="username"></label>
  <label>Password <input name="password" type="password" required
    autocomplete="current-password"></label>
  <button type="submit">Log in</button>
</form>"""

# The logout forms need no CSRF token: the middleware answers them before Django's
# CsrfViewMiddleware, and refuses cross-site POSTs itself.
LOGOUT_FORMS = """<p id="user">Logged in as {user}.</p>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
<form method="post" action="/logout/everywhere">
  <button type="submit">Log out everywhere</button>
</form>"""


def _page(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(PAGE.format(body=body), status=status, content_type="text/html")


def _login_page(request: HttpRequest, error: str = "", status: int = 200) -> HttpResponse:
    error_html = f'\n<p id="error">{escape(error)}</p>' if error else ""
    return _page(LOGIN_FORM.format(error=error_html, csrf=escape(get_token(request))), status)


def index(request: HttpRequest) -> HttpResponse:
    """Who is logged in, with the form that fits: log in, or log out."""
    if request.user.is_authenticated:
        return _page(LOGOUT_FORMS.format(user=escape(request.user.get_username())))
    return _login_page(request)


def login_view(request: HttpRequest) -> HttpResponse:
    """Log in with Django's ``AuthenticationForm`` (``login()`` gives the session a new
    id and stores the user's id at ``_auth_user_id``); ``303`` to ``/``, or the form
    again with ``400``; ``405`` for any method but ``POST``."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    form = AuthenticationForm(request, data=request.POST)
    if not form.is_valid():
        return _login_page(request, "Wrong user name or password.", status=400)
    login(request, form.get_user())
    response = HttpResponseRedirect("/")
    response.status_code = 303
    return response

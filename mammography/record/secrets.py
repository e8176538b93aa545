"""Secrets never reach a record: one masking function for everything a run writes.

A study shared on a database server is named by a URL that may carry a
password (``tune --storage postgresql://user:secret@db/optuna``), in the
userinfo or as a query parameter (``?password=``). summary.json (``argv``,
``command_line``, ``config``, ``execution.error``), config.yaml, run.log and
the error messages are meant to be shared, exported and committed, so all of
them go through this module:

* :func:`mask_url` - a string that *is* a URL, parsed the way the consumer
  parses it: SQLAlchemy's ``make_url`` when SQLAlchemy is installed (it is
  an extra, ``mammography[storage]``), else the same grammar here. The
  password is everything SQLAlchemy would send - ``/``, spaces, ``?`` and
  all - and query parameters whose name says secret (``password``,
  ``secret``, ``token``, ``api_key``, ...) are masked too.
* :func:`mask_secrets` - any text (a message, a log line, an argv element):
  a whole URL as above, URL passwords and secret query parameters inside
  free text, and every secret value this process has seen (a password with
  a space cannot be delimited inside free text, but it is known by then).
* :func:`mask_argv` - the command line, including ``--some-secret VALUE``.
* :func:`secret_name` - whether an option, setting or parameter name says
  secret (its value is then masked whatever it looks like).

Every secret found is remembered for this process (:func:`known_secrets`,
which also reads ``sys.argv``), so the tee masks it in run.log wherever it
appears: the tee worker loads this file by its path (it runs without the
package) and gets the values through ``SECRETS_ENV``. A run resumed from a
masked record is told to give the secret again (``has_masked_password``).

Limits: a secret shorter than ``MIN_LITERAL`` characters is masked where its
form delimits it (URL, option, setting) but not searched for in free text,
where it would mask every "a" in run.log.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
#: The environment variable that hands the tee worker the secrets to mask (JSON list).
SECRETS_ENV = "MAMMOGRAPHY_TEE_SECRETS"
#: Shorter secrets are not searched for in free text (see the module docstring).
MIN_LITERAL = 4
_SECRET_WORDS = ("password", "passwd", "passphrase", "pwd", "secret", "token", "apikey",
                 "accesskey", "privatekey", "credential", "authorization")
_NON_WORD = re.compile(r"[^a-z0-9]")
# scheme://user:password@ in free text: the password runs to the last "@" (it may
# hold "/", "?", ":" and "@": see mask_url), but not across whitespace, which ends
# the URL.
_TEXT_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<secret>\S*)@")
# name=value in a URL's query or a key=value list: masked when the name says secret.
_TEXT_PARAM = re.compile(r"(?P<head>(?:^|[?&;,\s])(?P<name>[A-Za-z0-9_.\-]+)=)"
                         r"(?P<value>[^&;,\s#'\"]*)")
# A whole URL with a password: sqlalchemy.engine.url._parse_url's grammar, but the
# password runs to the last "@" (see mask_url).
_WHOLE_URL = re.compile(r"""
    (?P<head>[\w+]+://[^:/]*):(?P<password>.*)@
    (?P<rest>[^@]*)
    """, re.X | re.S)
_URL_START = re.compile(r"^[A-Za-z][\w+]*://")

_known: set[str] = set()
_argv_seen: tuple[str, ...] | None = None


def secret_name(name: str) -> bool:
    """Whether an option, setting or parameter called ``name`` holds a secret."""
    flat = _NON_WORD.sub("", name.lower())
    return any(word in flat for word in _SECRET_WORDS)


# ------------------------------------------------------------------ remembering


def remember(values: Iterable[str | None]) -> None:
    """Secrets to mask wherever they appear from now on (raw and percent-encoded)."""
    for value in values:
        if value and value != MASK:
            _known.add(value)
            encoded = quote(value, safe="")
            if encoded != value:
                _known.add(encoded)


def known_secrets() -> list[str]:
    """Every secret this process has seen (its command line included), longest first."""
    global _argv_seen
    argv = tuple(sys.argv)
    if argv != _argv_seen:
        _argv_seen = argv
        mask_argv(list(argv))  # finds and remembers them
    return sorted(_known, key=len, reverse=True)


def tee_environment() -> dict[str, str]:
    """The environment entry that gives the tee worker the secrets to mask in run.log."""
    literal = [s for s in known_secrets() if len(s) >= MIN_LITERAL]
    return {SECRETS_ENV: json.dumps(literal)} if literal else {}


# ------------------------------------------------------------------ masking


def mask_url(url: str) -> str:
    """A string that is a URL, its password and secret query parameters masked.

    SQLAlchemy's ``make_url`` (when installed) says what it would connect with:
    its password and query values are remembered as secrets. The text is then
    masked by the same grammar, made greedier where that is safer: the password
    runs from the ``:`` after the user name to the *last* ``@`` (SQLAlchemy
    stops at the first, and reads ``u:p@ss@host`` as host ``ss@host``). The
    rest of the URL keeps its spelling; a URL without a secret is unchanged.
    """
    try:
        from sqlalchemy.engine import make_url
    except ImportError:
        make_url = None
    if make_url is not None:
        try:
            parsed = make_url(url)
        except Exception:  # not a URL SQLAlchemy can read: the grammar below decides
            parsed = None
        if parsed is not None:
            remember([parsed.password if parsed.password is not None else None])
            remember(v for k, values in dict(parsed.query).items() if secret_name(k)
                     for v in (values if isinstance(values, tuple) else (values,)))
    return _mask_known(_mask_url_plain(url))


def _mask_url_plain(url: str) -> str:
    match = _WHOLE_URL.match(url)
    if match is None:
        return mask_text(url)
    head, password, rest = match.group("head"), match.group("password"), match.group("rest")
    if password is not None:
        remember([password, unquote(password)])
        head = f"{head}:{MASK}@"
    return head + _mask_params(rest)


def _mask_params(text: str) -> str:
    def hide(match: re.Match[str]) -> str:
        if not secret_name(match.group("name")) or not match.group("value"):
            return match.group(0)
        remember([unquote(match.group("value")), match.group("value")])
        return match.group("head") + MASK

    return _TEXT_PARAM.sub(hide, text)


def mask_text(text: str) -> str:
    """Free text with URL passwords, secret ``name=value`` pairs and known secrets masked."""
    if "://" in text and "@" in text:
        def hide(match: re.Match[str]) -> str:
            remember([match.group("secret"), unquote(match.group("secret"))])
            return f"{match.group('head')}:{MASK}@"

        text = _TEXT_PASSWORD.sub(hide, text)
    if "=" in text:
        text = _mask_params(text)
    return _mask_known(text)


def _mask_known(text: str) -> str:
    for secret in sorted(_known, key=len, reverse=True):
        if len(secret) >= MIN_LITERAL and secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_secrets(text: str) -> str:
    """``text`` with every secret masked: a whole URL as :func:`mask_url`, anything
    else as :func:`mask_text`. The one function every record and message goes through."""
    if not isinstance(text, str) or not text:
        return text
    known_secrets()  # the command line's secrets are known before any text is masked
    stripped = text.strip()
    if _URL_START.match(stripped) and not any(c in stripped for c in "\n\t"):
        masked = mask_url(stripped)
        return _mask_known(text if masked == stripped else masked)
    return mask_text(text)


def hide(value: Any) -> str:
    """``***`` for a value held under a secret name; the value is remembered (and then
    masked wherever else it shows up)."""
    if isinstance(value, str | int | float):
        remember([str(value)])
    return MASK


def mask_tree(value: Any) -> Any:
    """A JSON-like structure with every secret masked: strings through
    :func:`mask_secrets`, and any value under a key whose name says secret."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: hide(value[k]) if isinstance(k, str) and secret_name(k)
                and value[k] not in (None, "") else mask_tree(value[k]) for k in value}
    if isinstance(value, list):
        return [mask_tree(v) for v in value]
    if type(value) is tuple:
        return tuple(mask_tree(v) for v in value)
    return value


def mask_argv(argv: list[str]) -> list[str]:
    """The command line with every secret masked: URLs (also ``--opt=URL``), secret
    query parameters, and the value of any option whose name says secret."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            remember([arg])
            out.append(MASK)
            hide_next = False
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if secret_name(name):
                if eq:
                    remember([value])
                    out.append(f"{name}={MASK}")
                else:
                    hide_next = True
                    out.append(arg)
                continue
            if eq:
                out.append(f"{name}={_mask_value(value)}")
                continue
        out.append(_mask_value(arg))
    return out


def _mask_value(value: str) -> str:
    if _URL_START.match(value):
        return mask_url(value)
    return mask_text(value) if ("://" in value or "=" in value) else _mask_known(value)


def has_masked_password(text: str) -> bool:
    """Whether ``text`` is a URL whose secret was masked when it was recorded."""
    return "://" in text and (f":{MASK}@" in text or f"={MASK}" in text)

"""The file-serving policy: how `/view` and friends hand user files to a browser.

Owns the list of content types a browser would run or render as a page in our origin
(`DANGEROUS_CONTENT_TYPES`), the Content-Type actually sent for a file, the escaped
Content-Disposition header, and `file_response`, which serves dangerous types as downloads
instead of letting them render as active content (security.md §1.2, §3).

Uses aiohttp and the standard library only: it never imports torch, the engine or the request
security middleware (server/security.py); it has no module-level mutable state.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web

# Types a browser would execute or render as a document in our origin (stored XSS). Any
# "*+xml" and "*/xml" type is dangerous as well; see is_dangerous_content_type.
DANGEROUS_CONTENT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "text/ecmascript",
        "application/ecmascript",
        "text/jscript",
        "text/css",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "message/rfc822",  # MHT web archives
        "multipart/related",
        "application/x-mimearchive",
    }
)
OCTET_STREAM = "application/octet-stream"


def normalise_content_type(content_type: str | None) -> str:
    """The bare, lowercased type: "Text/HTML; charset=utf-8" becomes "text/html"."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_dangerous_content_type(content_type: str | None) -> bool:
    """True for types a browser would run or render as a page in our origin."""
    normalised = normalise_content_type(content_type)
    return normalised in DANGEROUS_CONTENT_TYPES or normalised.endswith(("+xml", "/xml"))


def served_content_type(path: Path, download_name: str) -> str:
    """The Content-Type `file_response` sends: the guessed type, or octet-stream if dangerous.

    Both the file's own name and the download name are checked, so renaming cannot smuggle
    an HTML or SVG file out as something harmless.
    """
    guesses = [mimetypes.guess_type(name)[0] for name in (path.name, download_name)]
    if any(is_dangerous_content_type(guess) for guess in guesses) or guesses[0] is None:
        return OCTET_STREAM
    return normalise_content_type(guesses[0])


def content_disposition(disposition: str, filename: str) -> str:
    """A Content-Disposition value with an ASCII fallback and an RFC 5987 `filename*`.

    The fallback replaces quotes, backslashes, '%', ';' and non-ASCII characters, so a
    crafted name cannot end the quoted string or inject header parameters.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1] or "download"
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\%;' else "_" for char in name)
    encoded = quote(name, safe="!#$&+^`|", errors="replace")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def file_response(path: Path, download_name: str) -> web.StreamResponse:
    """Serve a user file (`/view`); dangerous types as an `application/octet-stream` download.

    `path` must come from `engine.paths.resolve_under`, which resolves every symlink; a
    symlink found here means the file was swapped after that check, so it is not followed.
    """
    if path.is_symlink():
        return web.json_response({"error": "file not found"}, status=404, headers={"X-Content-Type-Options": "nosniff"})
    content_type = served_content_type(path, download_name)
    disposition = "attachment" if content_type == OCTET_STREAM else "inline"
    headers = {
        hdrs.CONTENT_TYPE: content_type,
        hdrs.CONTENT_DISPOSITION: content_disposition(disposition, download_name),
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(path, headers=headers)

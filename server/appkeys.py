"""Typed application state: every object a handler may use, declared once.

Handlers read these with `request.app[KEY]`; nothing is stored under string keys and
nothing lives at module level. `server/app.py` fills them in `create_app`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from engine.runtime import Runtime
from server.pools import Pools
from server.previews import PreviewCache
from server.redaction import PathRedactor
from server.security import SecurityConfig
from server.startup import NodeLoading
from server.store import PromptStore
from server.worker import PromptWorker
from server.ws import SocketHub

RUNTIME = web.AppKey("runtime", Runtime)
SECURITY = web.AppKey("security", SecurityConfig)
STORE = web.AppKey("store", PromptStore)
WORKER = web.AppKey("worker", PromptWorker)
HUB = web.AppKey("hub", SocketHub)
WEB_DIR = web.AppKey("web_dir", Path)
POOLS = web.AppKey("pools", Pools)
PREVIEWS = web.AppKey("previews", PreviewCache)
REDACTOR = web.AppKey("redactor", PathRedactor)
NODES = web.AppKey("nodes", NodeLoading)

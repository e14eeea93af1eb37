"""Headless runs: workflow files in, executor run out, progress on the terminal.

Owns what `main.py run` and `main.py submit` share: reading a workflow file (API JSON, UI
JSON, a PNG carrying `prompt`/`workflow` text chunks, or a WebP image or WebM/MP4 video
carrying them as ComfyUI embeds them, see `engine.workflow_metadata`), falling back to the
embedded API prompt when the file's canvas cannot be converted, `--set NODE.INPUT=VALUE`
overrides, readable validation errors, and `TerminalProgress`, an `EventSink` that draws
one line per node and an in-place bar for node progress on stderr.

Importing this module must not import torch: `submit` (server/client.py) reuses the
loader, the overrides and the printer, so the executor, validation and media modules are
imported inside the functions that need them. It imports no aiohttp and keeps no
module-level mutable state.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from engine.convert import ConversionError, is_api_prompt, is_ui_workflow, load_workflow
from engine.events import (
    Event,
    EventSink,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodeProgress,
    NodesCached,
    NodeStarted,
)
from engine.workflow_metadata import MetadataError, media_kind, read_embedded_metadata

if TYPE_CHECKING:
    from engine.run_state import RunRequest, RunResult
    from engine.runtime import Runtime

PngTextReader = Callable[[Path], Mapping[str, str]]
_BAR_WIDTH = 30
_PLAIN_PROGRESS_STEPS = 10  # without a tty, at most this many progress lines per node


class WorkflowError(Exception):
    """A workflow that cannot run: unreadable file, bad override, conversion or validation failure."""


# --------------------------------------------------------------------------- loading


def _read_png_text_with_media(path: Path) -> Mapping[str, str]:
    from engine.media import read_png_text  # imports torch; only `run` takes this path

    return read_png_text(path)


@dataclass(frozen=True)
class WorkflowFile:
    """A workflow read from a file, with what the file carries besides it."""

    workflow: dict[str, Any]  # an API prompt or a UI (canvas) workflow
    extra_pnginfo: dict[str, Any] | None  # what SaveImage embeds again: {"workflow": canvas}
    # The API prompt ComfyUI saved beside the canvas in the same image or video: what runs
    # when the canvas itself cannot be converted (a layout this server cannot read).
    embedded_prompt: dict[str, Any] | None = None


def read_workflow_file(path: Path | str, *, png_text: PngTextReader | None = None) -> WorkflowFile:
    """Read a JSON workflow, or the workflow a PNG, WebP, WebM or MP4 file embeds."""
    path = Path(path)
    try:
        kind = "png" if path.suffix.lower() == ".png" else media_kind(path)
        if kind == "png":
            return _from_png(path, png_text or _read_png_text_with_media)
        if kind is not None:
            what = "WebP image" if kind == "webp" else "video"
            return _from_embedded(path, read_embedded_metadata(path), what, "metadata")
    except MetadataError as error:
        raise WorkflowError(str(error)) from error
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WorkflowError(f"{path}: cannot read a JSON workflow: {error}") from error
    return WorkflowFile(*_classify(data, str(path)))


def _from_png(path: Path, png_text: PngTextReader) -> WorkflowFile:
    try:
        chunks = png_text(path)
    except (OSError, ValueError) as error:
        raise WorkflowError(f"{path}: cannot read the PNG: {error}") from error
    return _from_embedded(path, chunks, "PNG", "chunk")


def _from_embedded(path: Path, texts: Mapping[str, str], what: str, place: str) -> WorkflowFile:
    """The canvas a file embeds (with its API prompt as the fallback), else its API prompt."""
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for key in ("workflow", "prompt"):
        if key in texts:
            try:
                parsed[key] = json.loads(texts[key])
            except (json.JSONDecodeError, RecursionError) as error:
                problems.append(f"the {what}'s '{key}' {place} is not JSON: {error}")
    prompt = parsed.get("prompt")
    fallback = dict(prompt) if isinstance(prompt, Mapping) and prompt and is_api_prompt(prompt) else None
    if is_ui_workflow(parsed.get("workflow")):
        return WorkflowFile(parsed["workflow"], {"workflow": parsed["workflow"]}, fallback)
    for key in ("workflow", "prompt"):
        if key in parsed:
            try:
                return WorkflowFile(*_classify(parsed[key], f"{path} ({key} {place})"))
            except WorkflowError as error:
                problems.append(str(error))
    if problems:
        raise WorkflowError(f"{path}: " + "; ".join(problems))
    raise WorkflowError(f"{path}: the {what} carries neither a 'workflow' nor a 'prompt' {place}")


def _classify(data: Any, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if is_ui_workflow(data):
        return data, {"workflow": data}
    if isinstance(data, Mapping) and data and is_api_prompt(data):
        return dict(data), None
    # A saved `POST /prompt` body: {"prompt": {...}, "extra_data": {"extra_pnginfo": {...}}}.
    if isinstance(data, Mapping) and isinstance(data.get("prompt"), Mapping) and is_api_prompt(data["prompt"]):
        extra = (data.get("extra_data") or {}).get("extra_pnginfo")
        return dict(data["prompt"]), dict(extra) if isinstance(extra, Mapping) else None
    raise WorkflowError(f"{where}: not a workflow (expected an API prompt with a class_type per node, "
                        "or a UI workflow with nodes and links)")


def to_api_prompt(workflow: Mapping[str, Any], object_info: Mapping[str, Any], *,
                  fallback_prompt: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The API prompt for either format; conversion errors become WorkflowError.

    With `fallback_prompt` (the API prompt a file embeds beside its canvas), a canvas that
    cannot be converted is replaced by it, and a notice saying why goes to stderr.
    """
    try:
        return load_workflow(workflow, object_info)
    except ConversionError as error:
        if fallback_prompt is None:
            raise WorkflowError(f"cannot convert the UI workflow: {error}") from error
        try:
            prompt = load_workflow(fallback_prompt, object_info)
        except ConversionError as second:
            raise WorkflowError(f"cannot convert the UI workflow: {error}; the API prompt embedded beside it "
                                f"cannot be used either: {second}") from second
        print(f"flowmill: the UI workflow cannot be converted ({error}); running the API prompt embedded "
              "beside it instead", file=sys.stderr)
        return prompt


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split "NODE.INPUT=VALUE" into (node, input, value); VALUE is JSON when it parses."""
    target, equals, raw = text.partition("=")
    node, dot, name = target.rpartition(".")  # input names have no dots; titles may
    if not equals or not dot or not node.strip() or not name.strip():
        raise WorkflowError(f"override {text!r} must look like NODE.INPUT=VALUE (NODE is an id or a title)")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return node.strip(), name.strip(), value


def resolve_node(prompt: Mapping[str, Any], name: str) -> str:
    """The id of the node called `name`: its id, or its unique `_meta.title`."""
    matches = {node_id for node_id in prompt if node_id == name}
    matches |= {node_id for node_id, node in prompt.items() if _title(node) == name}
    if len(matches) == 1:
        return matches.pop()
    if not matches:
        known = ", ".join(f"{node_id} ({_title(node) or node.get('class_type')})" for node_id, node in prompt.items())
        raise WorkflowError(f"override names node {name!r}, which is neither a node id nor a node title; "
                            f"nodes: {_shorten(known)}")
    listed = ", ".join(sorted(matches, key=_id_order))
    raise WorkflowError(f"override names node {name!r}, which is ambiguous: it matches nodes {listed}; "
                        "use the node id")


def apply_overrides(prompt: Mapping[str, Any], overrides: Sequence[str],
                    object_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `prompt` with each "NODE.INPUT=VALUE" applied, in order.

    With `object_info`, an input the node's type does not declare is an error rather than
    a silently ignored value.
    """
    result = copy.deepcopy(dict(prompt))
    for text in overrides:
        node_name, input_name, value = parse_override(text)
        node_id = resolve_node(result, node_name)
        node = result[node_id]
        declared = _declared_inputs(object_info, str(node.get("class_type")))
        if declared is not None and input_name not in declared:
            raise WorkflowError(f"override {text!r}: node {node_id} ({node.get('class_type')}) has no input "
                                f"{input_name!r}; its inputs are {', '.join(declared) or 'none'}")
        node.setdefault("inputs", {})[input_name] = value
    return result


def _declared_inputs(object_info: Mapping[str, Any] | None, class_type: str) -> list[str] | None:
    if object_info is None or class_type not in object_info:
        return None
    sections = object_info[class_type].get("input") or {}
    return [name for kind in ("required", "optional") for name in (sections.get(kind) or {})]


def _title(node: Any) -> str | None:
    meta = node.get("_meta") if isinstance(node, Mapping) else None
    return meta.get("title") if isinstance(meta, Mapping) else None


def _id_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (sys.maxsize, node_id)


def _shorten(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


# --------------------------------------------------------------------------- validation errors


def format_validation_errors(error: Mapping[str, Any] | None, node_errors: Mapping[str, Any],
                             prompt: Mapping[str, Any] | None = None) -> str:
    """ComfyUI's validation error JSON as readable lines naming node, input, expected, received."""
    lines = []
    if error:
        lines.append(f"{error.get('message', 'invalid prompt')}")
    for node_id in sorted(node_errors, key=_id_order):
        entry = node_errors[node_id]
        node = (prompt or {}).get(node_id) or {}
        title = _title(node)
        label = f"node {node_id} ({entry.get('class_type') or node.get('class_type')}"
        label += f', "{title}")' if title else ")"
        for item in entry.get("errors") or []:
            lines.append(f"  {label}: {_describe_error(item)}")
    if len(lines) == 1 and error and error.get("details"):
        lines.append(f"  {error['details']}")
    return "\n".join(lines)


def _describe_error(item: Mapping[str, Any]) -> str:
    info = item.get("extra_info") or {}
    text = str(item.get("message", ""))
    if item.get("details") and item["details"] != info.get("input_name"):  # ComfyUI repeats the name there
        text += f": {item['details']}"
    if info.get("exception_message"):
        text += f" ({info['exception_message']})"
    if info.get("input_name"):
        text = f"input '{info['input_name']}': {text}"
    expected = info.get("expected_type")
    if expected is None and isinstance(info.get("input_config"), list) and info["input_config"]:
        expected = info["input_config"][0]
        options = info["input_config"][1] if len(info["input_config"]) > 1 else {}
        bounds = {key: options[key] for key in ("min", "max") if isinstance(options, Mapping) and key in options}
        if bounds:
            expected = f"{expected} {bounds}"
    if expected is not None:
        text += f"; expected {_shorten(str(expected), 200)}"
    if "received_type" in info:
        text += f", received {info['received_type']}"
    elif "received_value" in info:
        text += f", received {_shorten(json.dumps(info['received_value'], default=repr), 200)}"
    return text


# --------------------------------------------------------------------------- running


def prepare_run(runtime: Runtime, workflow: Mapping[str, Any], overrides: Sequence[str],
                extra_pnginfo: Mapping[str, Any] | None = None, *,
                fallback_prompt: Mapping[str, Any] | None = None) -> RunRequest:
    """Convert, override and validate a workflow into a RunRequest; raise WorkflowError if invalid."""
    from engine.run_state import RunRequest
    from engine.validation import validate_prompt

    object_info = runtime.registry.object_info(runtime.folders.choices)
    converted = to_api_prompt(workflow, object_info, fallback_prompt=fallback_prompt)
    prompt = apply_overrides(converted, overrides, object_info)
    result = validate_prompt(prompt, runtime.registry, folders=runtime.folders,
                             max_tensor_bytes=runtime.max_tensor_bytes)
    if not result.ok:
        raise WorkflowError(format_validation_errors(result.error, result.node_errors, prompt))
    if extra_pnginfo is None and is_ui_workflow(workflow):
        extra_pnginfo = {"workflow": workflow}
    extra = {"extra_pnginfo": dict(extra_pnginfo)} if extra_pnginfo else {}
    return RunRequest(str(uuid.uuid4()), result.prompt, result.outputs, extra)


def run_workflow(runtime: Runtime, workflow: Mapping[str, Any], overrides: list[str], progress: EventSink,
                 *, extra_pnginfo: Mapping[str, Any] | None = None,
                 fallback_prompt: Mapping[str, Any] | None = None) -> RunResult:
    """Run a workflow (API or UI format) to completion; blocks until it ends.

    Raises WorkflowError when it cannot start (bad override, conversion, validation); node
    failures come back as a RunResult with status "error" and are reported to `progress`.
    `fallback_prompt` is the API prompt to run when a canvas cannot be converted.
    """
    request = prepare_run(runtime, workflow, overrides, extra_pnginfo, fallback_prompt=fallback_prompt)
    if isinstance(progress, TerminalProgress):
        progress.use_prompt(request.prompt)
    return execute_interruptibly(runtime, request, progress)


def execute_interruptibly(runtime: Runtime, request: RunRequest, progress: EventSink) -> RunResult:
    """Run on a worker thread, as the server does; Ctrl-C sets the interrupt flag and the run stops cleanly."""
    from engine.context import InterruptFlag

    interrupt = InterruptFlag()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowmill-run") as pool:
        future = pool.submit(runtime.executor.run, request, progress, interrupt)
        while True:
            try:
                return future.result()
            except KeyboardInterrupt:
                interrupt.set()  # the executor checks it before every node and at progress points


def written_files(outputs: Mapping[str, Mapping[str, Any]], roots: Mapping[str, Path]) -> list[Path]:
    """Paths of the images listed in history-style `outputs`, for folder types found in `roots`."""
    found = []
    for ui in outputs.values():
        for image in ui.get("images") or []:
            root = roots.get(str(image.get("type")))
            if root is not None:
                found.append(root / str(image.get("subfolder") or "") / str(image.get("filename")))
    return found


# --------------------------------------------------------------------------- terminal progress


class TerminalProgress:
    """An EventSink that prints a run's progress; an in-place bar when `stream` is a tty.

    Lines: one per node that runs (id, class type, title), the number of cached nodes, each
    output's files, and failures in full (message, traceback, inputs).
    """

    def __init__(self, stream: TextIO | None = None, prompt: Mapping[str, Any] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.nodes: dict[str, Mapping[str, Any]] = {}
        self.ran = 0
        self.cached = 0
        self.started_at = time.monotonic()
        self._bar_open = False
        self._last_step: dict[str, int] = {}
        if prompt is not None:
            self.use_prompt(prompt)

    def use_prompt(self, prompt: Mapping[str, Any]) -> None:
        """Learn class types and titles, so lines can name them."""
        self.nodes = {str(node_id): node for node_id, node in prompt.items() if isinstance(node, Mapping)}

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _line(self, text: str) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def describe(self, node_id: str) -> str:
        node = self.nodes.get(node_id) or {}
        class_type = node.get("class_type") or "?"
        title = _title(node)
        return f"#{node_id} {class_type}" + (f' "{title}"' if title and title != class_type else "")

    def _on_ExecutionStarted(self, event: ExecutionStarted) -> None:
        self.started_at = time.monotonic()
        self.ran = self.cached = 0
        self._line(f"prompt {event.prompt_id}: started")

    def _on_NodesCached(self, event: NodesCached) -> None:
        self.cached = len(event.nodes)
        if event.nodes:
            self._line(f"{len(event.nodes)} node(s) served from the cache")

    def _on_NodeStarted(self, event: NodeStarted) -> None:
        self.ran += 1
        self._line(f"[{self.ran}] {self.describe(event.node_id)}")

    def _on_NodeProgress(self, event: NodeProgress) -> None:
        fraction = min(max(event.value / event.max, 0.0), 1.0) if event.max else 0.0
        if self.interactive:
            filled = int(round(fraction * _BAR_WIDTH))
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self.stream.write(f"\r    [{bar}] {event.value:g}/{event.max:g}")
            self.stream.flush()
            self._bar_open = True
            return
        step = int(fraction * _PLAIN_PROGRESS_STEPS)
        if event.max > 1 and self._last_step.get(event.node_id) != step:  # a few plain lines, not thousands
            self._last_step[event.node_id] = step
            self._line(f"    {self.describe(event.node_id)}: {event.value:g}/{event.max:g}")

    def _on_NodeFinished(self, event: NodeFinished) -> None:
        for image in (event.ui or {}).get("images") or []:
            subfolder = f"{image.get('subfolder')}/" if image.get("subfolder") else ""
            self._line(f"    {image.get('type', 'output')}: {subfolder}{image.get('filename')}")

    def _on_ExecutionFailed(self, event: ExecutionFailed) -> None:
        self._line(f"error in {self.describe(event.node_id)} ({event.node_type}): "
                   f"{event.exception_type}: {event.exception_message}")
        for entry in event.traceback:
            self.stream.write("    " + entry.rstrip("\n").replace("\n", "\n    ") + "\n")
        for name, value in event.current_inputs.items():
            self.stream.write(f"    input {name} = {_shorten(repr(value), 200)}\n")
        self.stream.flush()

    def _on_ExecutionInterrupted(self, event: ExecutionInterrupted) -> None:
        where = f" at {self.describe(event.node_id)}" if event.node_id else ""
        self._line(f"interrupted{where}")

    def _on_ExecutionSucceeded(self, event: ExecutionSucceeded) -> None:
        elapsed = time.monotonic() - self.started_at
        self._line(f"done in {elapsed:.2f} s: {self.ran} node(s) ran, {self.cached} cached")

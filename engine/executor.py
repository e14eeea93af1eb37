"""The executor: runs a validated prompt lazily from its output nodes.

Pull-based: only what a requested output needs runs, and a lazy input nobody asks for never
runs. Cache keys are Merkle digests (engine/keys.py), computed once per node per run, so an
unchanged re-queue executes nothing and a changed widget re-runs only its node and what
depends on it. Async node functions run as tasks, so independent ones overlap. A node may
return a subgraph to splice in (expansion), or an ExecutionBlocker. Interrupts are checked
before every node and at every progress point; a failing node (out-of-memory included)
ends the run with an `ExecutionFailed` event that names it, and the executor is ready for
the next prompt.

The executor knows nothing of sockets or HTTP: it reports to an `EventSink`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import math
import time
from functools import partial
from typing import Any

import torch

from engine.cache import OutputCache
from engine.context import CURRENT_NODE_CONTEXT, Interrupted, InterruptFlag, ModelScopes, NodeContext, NoModels
from engine.events import (
    EventSink,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodePreview,
    NodeProgress,
    NodesCached,
    NodeStarted,
    discard_events,
)
from engine.inputs import filled_hidden, gather_inputs, is_deferred, resolve_link
from engine.keys import DependencyCycleError, links_of, node_key, post_order
from engine.node_call import accepted_arguments, find_blocker, merge_results, slice_calls
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.run_state import (
    NodeFailure,
    Run,
    RunRequest,
    RunResult,
    failed,
    interrupted,
    outcome,
    splice_subgraph,
)
from engine.scheduler import Schedule
from engine.spec import (
    ExecutionBlocker,
    NodeHooks,
    NodeOutput,
    NodeSpec,
)
from engine.wire import is_link

__all__ = ["Executor", "RunRequest", "RunResult", "OOM_HINT"]
log = logging.getLogger(__name__)

OOM_HINT = (
    "This node ran out of memory. Cached outputs were moved off the device; try a smaller batch or "
    "resolution, or start Flowmill with --cache none."
)


class Executor:
    def __init__(self, registry: NodeRegistry, cache: OutputCache, folders: Folders,
                 device: torch.device | None = None, models: ModelScopes | None = None) -> None:
        self.registry = registry
        self.cache = cache
        self.folders = folders
        self.device = device or torch.device("cpu")
        self.models: ModelScopes = models or NoModels()
        self._instances: dict[tuple[str, str], NodeHooks] = {}

    def run(self, request: RunRequest, sink: EventSink = discard_events,
            interrupt: InterruptFlag | None = None) -> RunResult:
        """Run a prompt to completion on the calling thread (the worker's); never raises for node errors.

        A private loop rather than `asyncio.run`: on the main thread that installs a SIGINT
        handler, and Ctrl-C must instead reach the caller, which sets the interrupt flag.
        """
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.run_async(request, sink, interrupt or InterruptFlag()))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def free(self, *, free_memory: bool, unload_models: bool = False) -> None:
        """Drop cached outputs (and node instances) when asked to free memory, the resident models when
        asked to unload them; collect garbage."""
        if free_memory:
            self.cache.clear()
            self._instances.clear()
        if unload_models:
            self.models.unload_all()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    async def run_async(self, request: RunRequest, sink: EventSink, interrupt: InterruptFlag) -> RunResult:
        run = Run(request, sink, interrupt, dict(request.prompt), Schedule(request.outputs))
        run.display = {node_id: node_id for node_id in run.nodes}
        sink(ExecutionStarted(run.prompt_id, int(time.time() * 1000)))
        self.cache.begin_run()
        try:
            await self._assign_keys(run, request.outputs)
            sink(NodesCached(run.prompt_id, [node_id for node_id in run.nodes
                                              if node_id in run.keys and run.keys[node_id] in self.cache]))
            self._request(run, request.outputs)
            await self._drain(run)
        except NodeFailure as failure:
            return self._failed(run, failure)
        except Interrupted:
            return interrupted(run, None)
        except Exception as error:  # an executor bug: still a reported failure, never an escape
            log.exception("prompt %s failed inside the executor", run.prompt_id)
            return self._failed(run, NodeFailure("", error))
        finally:
            await self._cancel_tasks(run)
            self.cache.end_run(run.keys.values())
            self._instances = {key: hooks for key, hooks in self._instances.items() if key[0] in run.nodes}
        sink(ExecutionSucceeded(run.prompt_id, int(time.time() * 1000)))
        return outcome(run, "success")

    # -- keys -----------------------------------------------------------------------------

    async def _assign_keys(self, run: Run, roots: list[str]) -> None:
        order = post_order(run.nodes, roots, run.keys)
        for node_id in order:
            node = run.nodes[node_id]
            spec = self._spec(run, node_id)
            try:
                fingerprint = await self._fingerprint(run, node_id, spec) if spec.has_fingerprint else None
                run.keys[node_id] = node_key(node_id, node, spec, run.keys, fingerprint, run.salt)
            except Exception as error:  # e.g. a V1 constructor that raises: this node's failure
                raise NodeFailure(node_id, error) from error

    async def _fingerprint(self, run: Run, node_id: str, spec: NodeSpec) -> Any:
        """ComfyUI's IS_CHANGED: constant and hidden inputs (links arrive as None); errors mean NaN."""
        hooks = self._hooks(spec, node_id)
        if hooks.fingerprint is None:
            return None
        inputs = {name: (None if is_link(value) else value)
                  for name, value in (run.nodes[node_id].get("inputs") or {}).items()}
        inputs.update(filled_hidden(run, node_id, spec))
        args = [self._context(run, node_id)] if hooks.wants_context else []
        try:
            value = hooks.fingerprint(*args, **accepted_arguments(hooks.fingerprint, inputs))
            return await value if inspect.isawaitable(value) else value
        except Exception:  # a broken fingerprint must not break the run: treat it as "changed"
            log.warning("fingerprint of node %s (%s) failed; it will re-run", node_id, spec.id, exc_info=True)
            return math.nan

    # -- scheduling -------------------------------------------------------------------------

    def _request(self, run: Run, roots: list[str]) -> None:
        """Add `roots` and everything they need now to the run, serving hits from the cache."""
        stack = list(roots)
        while stack:
            node_id = stack.pop()
            if node_id in run.schedule.requested:
                continue
            run.schedule.requested.add(node_id)
            if self._serve_from_cache(run, node_id):
                continue
            spec = self._spec(run, node_id)
            sources = [source for name, source, _ in links_of(run.nodes[node_id])
                       if not is_deferred(spec, name)]
            stack.extend(source for source in sources if source not in run.schedule.requested)
            run.schedule.wait_for(node_id, sources)

    def _serve_from_cache(self, run: Run, node_id: str) -> bool:
        entry = self.cache.get(run.keys[node_id])
        if entry is None:
            return False
        run.values[node_id] = entry.outputs
        if entry.ui is not None:
            run.ui[node_id] = entry.ui
        if self._spec(run, node_id).output_node:
            run.sink(NodeFinished(run.prompt_id, node_id, run.display[node_id], entry.ui, cached=True))
        run.schedule.mark_available(node_id)
        return True

    async def _drain(self, run: Run) -> None:
        while True:
            if run.interrupt.is_set():
                raise Interrupted(f"prompt {run.prompt_id} was interrupted")
            node_id = run.schedule.pop_ready()
            if node_id is not None:
                await self._execute(run, node_id)
                continue
            if not run.tasks:
                break
            done, _ = await asyncio.wait(run.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node_id = run.tasks.pop(task)
                error = task.exception()
                if isinstance(error, NodeFailure):
                    raise error
                if error is not None:
                    raise NodeFailure(node_id, error)
                await self._complete(run, node_id, task.result())
        stalled = run.schedule.stalled()
        if stalled:
            blamed = next((node_id for node_id in stalled if node_id in run.parent), stalled[0])
            raise NodeFailure(blamed, DependencyCycleError(stalled))

    # -- one node ---------------------------------------------------------------------------

    async def _execute(self, run: Run, node_id: str) -> None:
        """Run one ready node; any exception becomes this node's failure (Interrupted included)."""
        inputs: dict[str, list[Any]] = {}
        try:
            if node_id in run.expanded:
                self._finish_expansion(run, node_id)
                return
            # An identical node that ran earlier in this run is a hit now (ComfyUI re-checks too).
            if node_id not in run.started and self._serve_from_cache(run, node_id):
                return
            spec = self._spec(run, node_id)
            hooks = self._hooks(spec, node_id)
            if node_id not in run.started:
                run.started.add(node_id)
                run.sink(NodeStarted(run.prompt_id, node_id, run.display[node_id]))
            inputs = gather_inputs(run, node_id, spec)
            if hooks.check_lazy is not None and any(item.lazy for item in spec.inputs):
                if await self._wait_for_lazy(run, node_id, spec, hooks, inputs):
                    return
            results = [self._call(run, node_id, spec, hooks, arguments) for arguments in slice_calls(spec, inputs)]
        except NodeFailure:
            raise
        except Exception as error:
            raise NodeFailure(node_id, error, inputs) from error
        if any(inspect.isawaitable(result) for result in results):
            task = asyncio.ensure_future(self._await_all(node_id, results, inputs))
            run.tasks[task] = node_id
            return
        await self._complete(run, node_id, results)

    async def _wait_for_lazy(self, run: Run, node_id: str, spec: NodeSpec, hooks: NodeHooks,
                             inputs: dict[str, list[Any]]) -> bool:
        """Ask the node which lazy inputs it needs; request the missing ones. True if it must wait."""
        args = [self._context(run, node_id)] if hooks.wants_context else []
        needed: set[str] = set()
        for arguments in slice_calls(spec, inputs):
            names = hooks.check_lazy(*args, **accepted_arguments(hooks.check_lazy, arguments))
            names = await names if inspect.isawaitable(names) else names
            needed.update(names or ())
        raw = run.nodes[node_id].get("inputs") or {}
        sources = [str(raw[name][0]) for name in sorted(needed)
                   if name in raw and is_link(raw[name]) and str(raw[name][0]) not in run.values]
        if not sources:
            return False
        self._request(run, sources)
        run.schedule.wait_for(node_id, sources)
        return True

    def _call(self, run: Run, node_id: str, spec: NodeSpec, hooks: NodeHooks, arguments: dict[str, Any]) -> Any:
        blocker = find_blocker(spec, arguments)
        if blocker is not None:
            return self._apply_blocker(run, node_id, spec, blocker)
        context = self._context(run, node_id)
        args = [context] if hooks.wants_context else []
        token = CURRENT_NODE_CONTEXT.set(context)
        try:
            result = hooks.run(*args, **arguments)
            if inspect.isawaitable(result):
                # The task copies the current context now, so shims inside it see this node.
                return asyncio.ensure_future(result)
            return result
        finally:
            CURRENT_NODE_CONTEXT.reset(token)

    def _apply_blocker(self, run: Run, node_id: str, spec: NodeSpec, blocker: ExecutionBlocker) -> ExecutionBlocker:
        """A blocked call: report a message once (as an error event), then block silently downstream."""
        if blocker.message is not None:
            run.sink(ExecutionFailed(run.prompt_id, node_id, spec.id, list(run.executed),
                                     f"Execution Blocked: {blocker.message}", "ExecutionBlocked", []))
            return ExecutionBlocker(None)
        return blocker

    async def _await_all(self, node_id: str, results: list[Any], inputs: dict[str, list[Any]]) -> list[Any]:
        try:
            return [await result if inspect.isawaitable(result) else result for result in results]
        except NodeFailure:
            raise
        except Exception as error:
            raise NodeFailure(node_id, error, inputs) from error

    async def _complete(self, run: Run, node_id: str, results: list[Any]) -> None:
        spec = self._spec(run, node_id)
        try:
            if any(isinstance(result, NodeOutput) and result.expand for result in results):
                await self._expand(run, node_id, results)
                return
            outputs, ui = merge_results(spec, results)
        except NodeFailure:
            raise
        except Exception as error:
            raise NodeFailure(node_id, error) from error
        self._store(run, node_id, outputs, ui)

    def _store(self, run: Run, node_id: str, outputs: list[list[Any]], ui: dict[str, Any] | None) -> None:
        if ui is not None:
            try:  # ui goes to websockets and history: refuse what cannot be sent, naming the node
                json.dumps(ui)
            except (TypeError, ValueError) as error:
                raise NodeFailure(node_id, TypeError(f"the ui this node returned is not JSON: {error}")) from error
        run.values[node_id] = outputs
        if ui is not None:
            run.ui[node_id] = ui
        run.executed.append(node_id)
        self.cache.put(run.keys[node_id], outputs, ui)
        run.sink(NodeFinished(run.prompt_id, node_id, run.display[node_id], ui))
        run.schedule.mark_available(node_id)

    # -- expansion --------------------------------------------------------------------------

    async def _expand(self, run: Run, node_id: str, results: list[Any]) -> None:
        """Splice each call's subgraph into the run; the node finishes once its result links resolve."""
        pending: list[Any] = []
        new_nodes: list[str] = []
        for call_index, result in enumerate(results):
            if not (isinstance(result, NodeOutput) and result.expand):
                pending.append(result)
                continue
            renamed = splice_subgraph(run, self.registry, node_id, call_index, result.expand)
            new_nodes.extend(renamed.values())
            values = tuple([renamed.get(str(value[0]), str(value[0])), value[1]] if is_link(value) else value
                           for value in result.values)
            pending.append(NodeOutput(values=values, ui=result.ui))
        run.expanded[node_id] = pending
        await self._assign_keys(run, new_nodes)
        sources = sorted({str(value[0]) for result in pending if isinstance(result, NodeOutput)
                          for value in result.values if is_link(value)})
        new_outputs = [new_id for new_id in new_nodes if self._spec(run, new_id).output_node]
        self._request(run, sources + new_outputs)
        run.schedule.wait_for(node_id, sources)

    def _finish_expansion(self, run: Run, node_id: str) -> None:
        spec = self._spec(run, node_id)
        resolved = []
        for result in run.expanded.pop(node_id):
            if not isinstance(result, NodeOutput):
                resolved.append(result)
                continue
            values = tuple(resolve_link(run, value) if is_link(value) else value for value in result.values)
            resolved.append(NodeOutput(values=values, ui=result.ui))
        outputs, ui = merge_results(spec, resolved)
        self._store(run, node_id, outputs, ui)

    # -- helpers ----------------------------------------------------------------------------

    def _spec(self, run: Run, node_id: str) -> NodeSpec:
        spec = self.registry.get(run.nodes[node_id]["class_type"])
        if spec is None:
            raise NodeFailure(node_id, KeyError(f"unknown node type {run.nodes[node_id]['class_type']!r}"))
        return spec

    def _hooks(self, spec: NodeSpec, node_id: str) -> NodeHooks:
        if not spec.keeps_instance:
            return spec.make_hooks()
        key = (node_id, spec.id)
        if key not in self._instances:
            self._instances[key] = spec.make_hooks()
        return self._instances[key]

    def _context(self, run: Run, node_id: str) -> NodeContext:
        return NodeContext(
            node_id=node_id,
            display_node_id=run.display.get(node_id, node_id),
            prompt_id=run.prompt_id,
            folders=self.folders,
            device=self.device,
            prompt=run.request.prompt,
            extra_pnginfo=run.request.extra_data.get("extra_pnginfo"),
            interrupt=run.interrupt,
            report=partial(self._report, run, node_id),
            models=self.models,
        )

    def _report(self, run: Run, node_id: str, value: float, total: float, preview: Any) -> None:
        display = run.display.get(node_id, node_id)
        run.sink(NodeProgress(run.prompt_id, node_id, display, value, total))
        if preview is not None:
            run.sink(NodePreview(run.prompt_id, node_id, display, preview))

    async def _cancel_tasks(self, run: Run) -> None:
        for task in run.tasks:
            task.cancel()
        if run.tasks:
            await asyncio.gather(*run.tasks, return_exceptions=True)
        run.tasks.clear()

    def _failed(self, run: Run, failure: NodeFailure) -> RunResult:
        if isinstance(failure.error, Interrupted):
            return interrupted(run, failure.node_id)
        message = str(failure.error)
        if isinstance(failure.error, torch.OutOfMemoryError):
            self.cache.offload_device_entries()
            self.free(free_memory=False)
            message = f"{message}\n{OOM_HINT}"
        return failed(run, failure, message)

"""Flowmill's command line: `serve` (the default), `run WORKFLOW` (headless), `submit WORKFLOW`.

The composition root: it parses flags, builds `Settings` and hands them to the runtime,
server or client. Heavy imports (torch, the engine, aiohttp) happen inside the subcommand
that needs them, so `submit` never loads torch. Exit codes: 0 success, 1 workflow error
(validation or execution), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

SET_HELP = "set an input; NODE is a node id or a unique title, VALUE is JSON if it parses, else a string"


def _override(text: str) -> str:
    target, equals, _ = text.partition("=")
    if not equals or "." not in target:
        raise argparse.ArgumentTypeError(f"{text!r} must look like NODE.INPUT=VALUE")
    return text


def _cache(text: str) -> Any:
    from engine.cache import CachePolicy  # imports torch, so only serve and run call this

    try:
        return CachePolicy.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _size(text: str) -> int:
    from engine.sizes import parse_bytes  # standard library only: parsing stays torch-free

    try:
        return parse_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _engine_flags(parser: argparse.ArgumentParser, out_flags: tuple[str, ...]) -> None:
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--input-dir", type=Path)
    parser.add_argument(*out_flags, dest="output_dir", type=Path, help="where outputs are written")
    parser.add_argument("--cache", default="classic", help="output cache: classic, lru:N or none")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    parser.add_argument("--custom-nodes-dir", type=Path, default=Path("custom_nodes"))
    parser.add_argument("--safe-mode", action="store_true", help="do not load custom nodes")
    parser.add_argument("--max-tensor-bytes", type=_size, metavar="SIZE",
                        help="refuse graphs in which one node would create more than SIZE of tensors, e.g. 8GiB "
                             "(default: half the RAM, at most the GPU's memory)")
    parser.add_argument("--ram-budget", type=_size, metavar="SIZE",
                        help="how much RAM loaded models may keep between prompts, least recently used out "
                             "(default: half the RAM)")
    parser.add_argument("--vram-budget", type=_size, metavar="SIZE",
                        help="how much GPU memory model weights may take; a larger model is streamed block by "
                             "block (default: the GPU's memory less 1.5 GiB)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="Flowmill: node-based diffusion workflows.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,run,submit}")
    serve = commands.add_parser("serve", help="serve the canvas and the ComfyUI API (the default)")
    serve.add_argument("--listen", action="append", help="address to bind (repeat or comma-separate); 127.0.0.1")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--workflow", dest="default_workflow", type=Path,
                       help="the workflow the browser opens with (default: workflows/default.json)")
    serve.add_argument("--token", help="access token for remote use; 'auto' generates and prints one")
    serve.add_argument("--insecure-no-auth", action="store_true", help="allow a non-loopback bind without a token")
    serve.add_argument("--allowed-hosts", action="append", default=[], metavar="NAMES",
                       help="extra Host names or addresses this server answers to (comma-separated, repeatable), "
                            "e.g. a reverse proxy's name; loopback and the bound addresses are always allowed")
    serve.add_argument("--user-dir", type=Path,
                       help="where the prompt queue (flowmill-queue.sqlite3) and other per-user state live "
                            "(default: ./user); one server per folder")
    _engine_flags(serve, ("--output-dir", "--out"))
    run = commands.add_parser("run", help="run a workflow file (.json API/UI, or .png) here, headless")
    run.add_argument("workflow", type=Path)
    run.add_argument("--set", dest="overrides", action="append", type=_override, default=[], metavar="NODE.INPUT=V",
                     help=SET_HELP)
    _engine_flags(run, ("--out", "--output-dir"))
    submit = commands.add_parser("submit", help="queue a workflow file on a running server and fetch its images")
    submit.add_argument("workflow", type=Path)
    submit.add_argument("--server", required=True, help="e.g. http://127.0.0.1:8188")
    submit.add_argument("--set", dest="overrides", action="append", type=_override, default=[],
                        metavar="NODE.INPUT=V", help=SET_HELP)
    submit.add_argument("--out", type=Path, default=Path("output"), help="where downloaded images go")
    submit.add_argument("--token", help="the server's access token")
    return parser


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    from engine.runtime import Settings

    try:
        cache = _cache(args.cache)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    settings = Settings(models_dir=args.models_dir, input_dir=args.input_dir, output_dir=args.output_dir, cache=cache,
                        force_cpu=args.cpu, custom_nodes_dir=args.custom_nodes_dir, safe_mode=args.safe_mode,
                        max_tensor_bytes=args.max_tensor_bytes, ram_budget=args.ram_budget,
                        vram_budget=args.vram_budget)
    if getattr(args, "user_dir", None) is not None:  # only `serve` has the option
        settings = dataclasses.replace(settings, user_dir=args.user_dir.resolve())
    default_workflow = getattr(args, "default_workflow", None)  # only `serve` has the option
    if default_workflow is not None:
        settings = dataclasses.replace(settings, default_workflow=default_workflow.resolve())
    return settings


def _model_manager(settings: Any) -> Any:
    """The model manager for `settings`' device and budgets (modeling/manager.py)."""
    from modeling.manager import build_model_manager

    return build_model_manager(settings.device(), settings.ram_budget, settings.vram_budget)


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from server.security import SecurityConfig, SecurityError, generate_token

    listen = [part.strip() for item in (args.listen or ["127.0.0.1"]) for part in item.split(",")]
    token = generate_token() if args.token == "auto" else args.token
    allowed_hosts = [part.strip() for item in args.allowed_hosts for part in item.split(",") if part.strip()]
    try:  # before anything heavy loads, so a refused bind fails in well under a second
        security = SecurityConfig(listen=listen, port=args.port, token=token, insecure_no_auth=args.insecure_no_auth,
                                  allowed_hosts=allowed_hosts)
    except SecurityError as error:
        print(f"flowmill: {error}", file=sys.stderr)
        return 2
    if args.token == "auto":
        print(f"Access token: {token}", flush=True)
    from engine.runtime import build_runtime, fill_registry
    from server.app import serve as serve_app
    from server.queue_lock import QueueInUseError

    settings = _settings(args, parser)
    if not settings.default_workflow.is_file():
        print(f"flowmill: default workflow not found: {settings.default_workflow}", file=sys.stderr)
        return 2
    logging.getLogger("flowmill").info("the browser opens with %s", settings.default_workflow)
    # The nodes load on a background thread while the page is already served (server/startup.py).
    runtime = build_runtime(settings, _model_manager(settings), discover_nodes=False)
    try:
        serve_app(runtime, security, load_nodes=lambda: fill_registry(runtime.registry, settings))
    except QueueInUseError as error:
        print(f"flowmill: {error}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.workflow.is_file():
        parser.error(f"workflow file not found: {args.workflow}")
    from engine.headless import TerminalProgress, WorkflowError, read_workflow_file, run_workflow, written_files
    from engine.runtime import build_runtime

    try:
        source = read_workflow_file(args.workflow)  # JSON, or a PNG/WebP/WebM/MP4 that embeds one
        settings = _settings(args, parser)
        runtime = build_runtime(settings, _model_manager(settings))
        result = run_workflow(runtime, source.workflow, args.overrides, TerminalProgress(),
                              extra_pnginfo=source.extra_pnginfo, fallback_prompt=source.embedded_prompt)
    except WorkflowError as error:
        print(f"flowmill: {error}", file=sys.stderr)
        return 1
    roots = {"output": runtime.folders.output_dir, "temp": runtime.folders.temp_dir}
    for path in written_files(result.outputs, roots):
        print(path)
    return 0 if result.status == "success" else 1


def submit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.workflow.is_file():
        parser.error(f"workflow file not found: {args.workflow}")
    from server.client import submit_workflow

    return submit_workflow(args.workflow, args.server, args.overrides, out_dir=args.out, token=args.token)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")  # `python main.py [--flags]` serves, as ComfyUI's main.py does
    parser = build_parser()
    args = parser.parse_args(argv)
    # The server reports to the log (packs loaded or failed, prompts recovered after a crash);
    # headless commands keep stderr for their progress and show only warnings.
    logging.basicConfig(level=logging.INFO if args.command == "serve" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return {"serve": serve, "run": run, "submit": submit}[args.command](args, parser)


if __name__ == "__main__":
    sys.exit(main())

"""Flowmill's stand-in for ComfyUI's `comfy_execution` package (`graph`, `graph_utils`)."""

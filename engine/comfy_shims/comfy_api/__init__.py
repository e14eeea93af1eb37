"""Flowmill's stand-in for ComfyUI's `comfy_api` package: only the `v0_0_2` progress API.

The V3 schema API (`comfy_api.latest.io`) is not provided; packs that need it fail to load
and are reported in the registry's load failures.
"""

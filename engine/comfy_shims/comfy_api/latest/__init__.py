"""`comfy_api.latest` stand-in: present only so `comfy_api.latest._caching` imports.

The V3 schema API (`io`, `ui`, `ComfyExtension`) is not provided: `from comfy_api.latest
import io` fails with ImportError, and the pack is reported in the registry's load failures.
"""

"""Conditioning nodes: text prompts encoded into ComfyUI's CONDITIONING lists."""

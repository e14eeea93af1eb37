"""Primitive value nodes (Int, Float, String, Boolean), ComfyUI's `utils/primitive` family."""

"""LoRA: recognising LoRA files (formats.py) and merging them into a model inside a scope (patch.py).

Imports nothing from engine/, nodes/ or server/; the loader nodes in nodes/loaders/ build the
`LoraPatch` values and the model manager applies them.
"""

from modeling.lora.formats import LoraFormatError, LoraMatch, LowRankChange, match_lora, parameter_shapes
from modeling.lora.patch import LoraFile, LoraPatch, read_lora

__all__ = ["LoraFile", "LoraFormatError", "LoraMatch", "LoraPatch", "LowRankChange", "match_lora",
           "parameter_shapes", "read_lora"]

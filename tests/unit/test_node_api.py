"""The node declaration and the registry's convention checks: clear, early failures."""

from __future__ import annotations

import sys
import types
from typing import Annotated, Literal, NamedTuple

import pytest

from engine.node_api import (
    Boolean,
    Choice,
    Float,
    Image,
    Int,
    Lazy,
    Mask,
    NodeContext,
    NodeDeclarationError,
    NodeOutput,
    Seed,
    String,
    node,
)
from engine.registry import NodeRegistry, RegistrationError, node_info


class ImageAndMask(NamedTuple):
    image: Image
    mask: Mask


def _needs_both(first: object, second: object) -> list[str]:
    return ["first", "second"]


@node(id="Everything", category="testing", display="Every widget", output_is_list=(False, True),
      check_lazy=_needs_both)
def everything(
    ctx: NodeContext,
    image: Image,
    steps: Annotated[int, Int(20, min=1, max=100, tooltip="How many steps.")],
    cfg: Annotated[float, Float(3.5, min=0.0, max=20.0, step=0.1)],
    prompt: Annotated[str, String("a cat", multiline=True)],
    flip: Annotated[bool, Boolean(False, label_on="yes", label_off="no")],
    mode: Literal["fast", "slow"],
    checkpoint: Annotated[str, Choice(source="checkpoints")],
    seed: Annotated[int, Seed()],
    first: Lazy[Image],
    second: Lazy[Image],
    mask: Mask | None = None,
) -> ImageAndMask:
    """Exercise every widget kind."""
    return ImageAndMask(image, image[..., 0])


def test_signature_becomes_the_comfyui_schema() -> None:
    info = node_info(everything.node_spec, lambda source: ["a.safetensors"] if source == "checkpoints" else [])
    required, optional = info["input"]["required"], info["input"]["optional"]
    assert required["image"] == ["IMAGE"]
    assert required["steps"] == ["INT", {"default": 20, "min": 1, "max": 100, "step": 1, "tooltip": "How many steps."}]
    assert required["cfg"][1]["step"] == 0.1 and required["prompt"][1]["multiline"] is True
    assert required["flip"] == ["BOOLEAN", {"default": False, "label_on": "yes", "label_off": "no"}]
    assert required["mode"] == [["fast", "slow"], {"default": "fast"}]
    assert required["checkpoint"][0] == ["a.safetensors"]
    assert required["seed"][1]["control_after_generate"] is True and required["seed"][1]["min"] == 0
    assert required["first"] == ["IMAGE", {"lazy": True}]
    assert optional == {"mask": ["MASK"]}
    assert info["input_order"]["required"][:3] == ["image", "steps", "cfg"]
    assert info["output"] == ["IMAGE", "MASK"] and info["output_name"] == ["image", "mask"]
    assert info["output_is_list"] == [False, True]
    assert (info["display_name"], info["description"]) == ("Every widget", "Exercise every widget kind.")
    assert everything.node_spec.make_hooks().wants_context is True


def _declare(function: object, **flags: object) -> object:
    return node(id="Broken", category="testing", **flags)(function)


def test_missing_annotation_is_refused() -> None:
    def broken(image):  # type: ignore[no-untyped-def]
        """Doc."""

    with pytest.raises(NodeDeclarationError, match="'image' has no type annotation"):
        _declare(broken)


def test_widget_without_default_is_refused() -> None:
    def broken(steps: int) -> Image:
        """Doc."""

    with pytest.raises(NodeDeclarationError, match="widget 'steps' needs a default"):
        _declare(broken)


def test_unknown_annotation_is_refused() -> None:
    def broken(thing: dict) -> Image:
        """Doc."""

    with pytest.raises(NodeDeclarationError, match="neither a socket type"):
        _declare(broken)


def test_lazy_input_needs_a_check_hook() -> None:
    def broken(image: Lazy[Image]) -> Image:
        """Doc."""

    with pytest.raises(NodeDeclarationError, match="no check_lazy"):
        _declare(broken)


def test_missing_return_annotation_is_refused() -> None:
    def broken(image: Image):  # type: ignore[no-untyped-def]
        """Doc."""

    with pytest.raises(NodeDeclarationError, match="missing return annotation"):
        _declare(broken)


def test_node_output_return_declares_its_sockets() -> None:
    def ui_only(image: Image) -> NodeOutput:
        """Doc."""

    def with_socket(image: Image) -> NodeOutput | Image:
        """Doc."""

    assert _declare(ui_only).node_spec.outputs == ()
    assert [output.type for output in _declare(with_socket).node_spec.outputs] == ["IMAGE"]


def _spec(function: object, node_id: str = "Checked") -> object:
    return node(id=node_id, category="testing")(function).node_spec


def test_registry_refuses_duplicates_missing_docstrings_and_bad_defaults() -> None:
    def first(image: Image) -> Image:
        """Doc."""

    def undocumented(image: Image) -> Image:
        pass

    def out_of_bounds(steps: Annotated[int, Int(500, min=1, max=100)]) -> Image:
        """Doc."""

    registry = NodeRegistry()
    registry.register(_spec(first, "Same"))
    with pytest.raises(RegistrationError, match="registered twice"):
        registry.register(_spec(first, "Same"))
    with pytest.raises(RegistrationError, match="no docstring"):
        registry.register(_spec(undocumented, "NoDoc"))
    with pytest.raises(RegistrationError, match=r"default 500 lies outside \[1, 100\]"):
        registry.register(_spec(out_of_bounds, "Bounds"))
    with pytest.raises(RegistrationError, match="PascalCase"):
        registry.register(_spec(first, "has space"))


def test_discover_requires_functions_named_after_their_file(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("fake_nodes")
    package.__path__ = []  # type: ignore[attr-defined]
    module = types.ModuleType("fake_nodes.image_thing")

    def misnamed(image: Image) -> Image:
        """Doc."""

    misnamed.__module__ = "fake_nodes.image_thing"
    module.misnamed = node(id="Misnamed", category="testing")(misnamed)
    monkeypatch.setitem(sys.modules, "fake_nodes", package)
    monkeypatch.setitem(sys.modules, "fake_nodes.image_thing", module)
    monkeypatch.setattr("pkgutil.walk_packages", lambda path, prefix: [types.SimpleNamespace(name=module.__name__)])
    with pytest.raises(RegistrationError, match="must be named after its file 'image_thing'"):
        NodeRegistry().discover("fake_nodes")

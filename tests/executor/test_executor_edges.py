"""Edge cases found in review: nothing escapes the executor, and ComfyUI's finer cache rules hold."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

from engine.comfy_v1 import spec_from_v1_class
from engine.events import ExecutionFailed
from engine.node_api import AnyValue, Int, NodeOutput, node
from engine.paths import Folders
from tests.executor.test_executor import Harness, image, invert, output


@pytest.fixture
def harness(folders: Folders) -> Harness:
    return Harness(folders)


def test_a_v1_class_whose_constructor_raises_is_a_node_error(harness: Harness) -> None:
    class Exploding:
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict:  # noqa: N802 - ComfyUI's name
            return {"required": {"image": ("IMAGE",)}}

        def __init__(self) -> None:
            raise RuntimeError("cannot build")

        def run(self, image: Any) -> tuple:
            return (image,)

    harness.registry.register(spec_from_v1_class("Exploding", Exploding, None, "tests"), strict=False)
    outcome = harness.run({"a": image(), "x": {"class_type": "Exploding", "inputs": {"image": ["a", 0]}},
                           "out": output("x")})
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed) and failure.node_id == "x" and "cannot build" in \
        failure.exception_message


def test_a_ui_that_is_not_json_is_an_error_naming_the_node(harness: Harness) -> None:
    @node(id="StubBadUi", category="testing", output=True)
    def stub_bad_ui(value: AnyValue) -> NodeOutput:
        """Return a set, which JSON cannot carry."""
        return NodeOutput(ui={"values": {1, 2}})

    harness.registry.register(stub_bad_ui.node_spec)
    outcome = harness.run({"a": image(), "bad": {"class_type": "StubBadUi", "inputs": {"value": ["a", 0]}}})
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed) and failure.node_id == "bad" and "not JSON" in \
        failure.exception_message


def test_identical_siblings_run_once(harness: Harness) -> None:
    graph: dict[str, Any] = {"a": image()}
    for index in range(5):
        graph[f"inv{index}"] = invert("a")
        graph[f"out{index}"] = output(f"inv{index}")
    ran = harness.run(graph).ran
    assert sum(node_id.startswith("inv") for node_id in ran) == 1
    assert sum(node_id.startswith("out") for node_id in ran) == 1


def test_a_fingerprint_that_names_only_some_inputs_still_caches(harness: Harness) -> None:
    calls: list[int] = []

    def version_of(steps: int) -> int:
        calls.append(steps)
        return steps

    @node(id="StubFingerprinted", category="testing", fingerprint=version_of)
    def stub_fingerprinted(value: AnyValue, steps: Annotated[int, Int(1, min=0, max=9)],
                           other: Annotated[int, Int(0, min=0, max=9)]) -> AnyValue:
        """Pass through; the fingerprint looks at steps only."""
        return value

    harness.registry.register(stub_fingerprinted.node_spec)
    graph = {"a": image(), "f": {"class_type": "StubFingerprinted",
                                 "inputs": {"value": ["a", 0], "steps": 3, "other": 1}}, "out": output("f")}
    harness.run(graph)
    assert harness.run(graph).ran == [] and calls == [3, 3]


def test_hidden_literal_inputs_reach_the_node(harness: Harness) -> None:
    class Carry:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict:  # noqa: N802 - ComfyUI's name
            return {"required": {"start": ("INT", {"default": 0})}, "hidden": {"state": ("INT",)}}

        def run(self, start: int, state: int | None = None) -> dict:
            return {"ui": {"values": [state]}, "result": (start,)}

    harness.registry.register(spec_from_v1_class("Carry", Carry, None, "tests"), strict=False)
    outcome = harness.run({"c": {"class_type": "Carry", "inputs": {"start": 1, "state": 7}}})
    assert outcome.result.outputs["c"]["values"] == [7]

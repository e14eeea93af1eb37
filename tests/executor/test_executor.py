"""Executor behaviour, specified with stub nodes in process (no server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.cache import MemoryBudget
from engine.context import InterruptFlag
from engine.events import ExecutionFailed, NodeFinished, NodeProgress, NodeStarted
from engine.node_api import AnyValue, node
from engine.paths import Folders
from tests.fixtures.pipeline import Outcome, Pipeline
from tests.fixtures.stub_nodes import stub_registry


class Harness(Pipeline):
    """The stub-node registry; runs may end in any status (the specs check it themselves)."""

    def __init__(self, folders: Folders, policy: str = "classic", budget: MemoryBudget | None = None) -> None:
        super().__init__(stub_registry(), folders, policy, budget)

    def run(self, prompt: dict, partial: list[str] | None = None, sink: Any = None,
            interrupt: InterruptFlag | None = None) -> Outcome:
        return super().run(prompt, expect=None, partial=partial, sink=sink, interrupt=interrupt)


@pytest.fixture
def harness(folders: Folders) -> Harness:
    return Harness(folders)


def image(content: str = "WHITE", size: int = 4) -> dict:
    return {"class_type": "StubImage", "inputs": {"content": content, "height": size, "width": size, "batch_size": 1}}


def invert(source: str) -> dict:
    return {"class_type": "StubInvert", "inputs": {"image": [source, 0]}}


def output(source: str, slot: int = 0) -> dict:
    return {"class_type": "StubOutput", "inputs": {"value": [source, slot]}}


def mix_graph(factor: float) -> dict:
    return {
        "white": image("WHITE"), "inv_white": invert("white"),
        "black": image("BLACK"), "inv_black": invert("black"),
        "mix": {"class_type": "StubLazyMix",
                "inputs": {"image1": ["inv_white", 0], "image2": ["inv_black", 0], "factor": factor}},
        "out": output("mix"),
    }


def test_lazy_branch_that_is_not_needed_never_runs(harness: Harness) -> None:
    outcome = harness.run(mix_graph(0.0))
    assert outcome.result.status == "success"
    assert {"white", "inv_white", "mix", "out"} <= set(outcome.ran)
    assert "black" not in outcome.ran and "inv_black" not in outcome.ran


def test_lazy_inputs_both_run_when_needed(harness: Harness) -> None:
    outcome = harness.run(mix_graph(0.5))
    assert {"white", "inv_white", "black", "inv_black"} <= set(outcome.ran)
    assert outcome.ui("out") == [1, 4, 4, 3]


def test_requeue_of_an_unchanged_graph_executes_nothing(harness: Harness) -> None:
    graph = {"a": image(), "b": invert("a"), "c": invert("b"), "out": output("c")}
    first = harness.run(graph)
    second = harness.run(graph)
    assert set(first.ran) == {"a", "b", "c", "out"}
    assert second.ran == []
    assert set(second.cached) == {"a", "b", "c", "out"}
    assert second.result.outputs["out"] == first.result.outputs["out"]
    assert any(isinstance(event, NodeFinished) and event.cached and event.node_id == "out" for event in second.events)


def test_changing_one_widget_reruns_only_that_node_and_its_dependents(harness: Harness) -> None:
    graph = {"a": image(), "b": invert("a"), "x": image("BLACK"), "y": invert("x"),
             "out1": output("b"), "out2": output("y")}
    harness.run(graph)
    graph["x"] = image("NOISE")
    outcome = harness.run(graph)
    assert set(outcome.ran) == {"x", "y", "out2"}


def test_partial_execution_targets_run_only_the_named_outputs(harness: Harness) -> None:
    graph = {"a": image(), "b": invert("a"), "x": image("BLACK"), "out1": output("b"), "out2": output("x")}
    outcome = harness.run(graph, partial=["out1"])
    assert set(outcome.ran) == {"a", "b", "out1"}
    assert "out2" not in outcome.result.outputs


def test_list_outputs_map_over_consumers_and_list_inputs_receive_whole_lists(harness: Harness) -> None:
    graph = {
        "make": {"class_type": "StubMakeList", "inputs": {"a": 1, "b": 2, "c": 3}},
        "double": {"class_type": "StubDouble", "inputs": {"value": ["make", 0]}},
        "sum": {"class_type": "StubSum", "inputs": {"values": ["double", 0]}},
        "each": output("double"),
        "total": output("sum"),
    }
    outcome = harness.run(graph)
    assert outcome.result.outputs["each"]["values"] == [2, 4, 6]
    assert outcome.ui("total") == 12


def test_expansion_builds_a_loop(harness: Harness) -> None:
    graph = {"start": {"class_type": "StubFloat", "inputs": {"value": 10.0}},
             "loop": {"class_type": "StubCountdown", "inputs": {"value": ["start", 0], "steps": 25}},
             "out": output("loop")}
    outcome = harness.run(graph)
    assert outcome.result.status == "success"
    assert outcome.ui("out") == 35.0
    ephemeral = [event for event in outcome.events if isinstance(event, NodeStarted) and "." in event.node_id]
    assert len(ephemeral) == 50  # 25 adds and 25 nested countdowns
    assert all(event.display_node_id == "loop" for event in ephemeral)
    assert harness.run(graph).ran == []


def test_blocked_output_does_not_run_and_a_message_is_reported(harness: Harness) -> None:
    graph = {"a": image(), "block": {"class_type": "StubBlock", "inputs": {"value": ["a", 0], "block": True,
                                                                              "message": ""}},
             "out": output("block"), "free": output("a")}
    outcome = harness.run(graph)
    assert outcome.result.status == "success"
    assert "out" not in outcome.result.outputs and "free" in outcome.result.outputs
    assert not any(isinstance(event, ExecutionFailed) for event in outcome.events)
    graph["block"]["inputs"]["message"] = "not today"
    outcome = harness.run(graph)
    errors = [event for event in outcome.events if isinstance(event, ExecutionFailed)]
    assert len(errors) == 1 and "not today" in errors[0].exception_message and errors[0].node_id == "out"
    assert "out" not in outcome.result.outputs


def test_independent_async_nodes_run_concurrently(harness: Harness) -> None:
    graph = {"a": image()}
    for index in range(3):
        graph[f"sleep{index}"] = {"class_type": "StubSleep", "inputs": {"value": ["a", 0], "seconds": 0.4}}
        graph[f"out{index}"] = output(f"sleep{index}")
    started = time.perf_counter()
    outcome = harness.run(graph)
    elapsed = time.perf_counter() - started
    assert outcome.result.status == "success" and len(outcome.result.outputs) == 3
    assert elapsed < 1.0, f"three 0.4 s sleeps took {elapsed:.2f} s; they did not overlap"


def test_failing_node_is_reported_and_the_next_run_is_healthy(harness: Harness) -> None:
    failing = {"a": image(), "bad": {"class_type": "StubFail", "inputs": {"value": ["a", 0], "message": "boom"}},
               "out": output("bad")}
    outcome = harness.run(failing)
    assert outcome.result.status == "error"
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed)
    assert (failure.node_id, failure.node_type, failure.exception_type) == ("bad", "StubFail", "ValueError")
    assert failure.exception_message == "boom" and any("boom" in line for line in failure.traceback)
    assert failure.current_inputs["message"] == ["boom"]
    assert failure.executed == ["a"]
    healthy = harness.run({"a": image(), "out": output("a")})
    assert healthy.result.status == "success" and set(healthy.result.outputs) == {"out"}


def test_out_of_memory_is_an_error_with_a_hint(folders: Folders) -> None:
    harness = Harness(folders)

    @node(id="StubOom", category="testing")
    def stub_oom(value: AnyValue) -> AnyValue:
        """Pretend the device ran out of memory."""
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    harness.registry.register(stub_oom.node_spec)
    outcome = harness.run({"a": image(), "oom": {"class_type": "StubOom", "inputs": {"value": ["a", 0]}},
                           "out": output("oom")})
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed) and failure.exception_type == "torch.OutOfMemoryError"
    assert "ran out of memory" in failure.exception_message
    assert harness.run({"a": image(), "out": output("a")}).result.status == "success"


def test_interrupt_stops_a_node_at_its_next_progress_point(harness: Harness) -> None:
    flag = InterruptFlag()

    def interrupt_on_progress(event: Any) -> None:
        if isinstance(event, NodeProgress) and event.value >= 3:
            threading.Thread(target=flag.set).start()

    graph = {"a": image(), "spin": {"class_type": "StubSpin", "inputs": {"value": ["a", 0], "steps": 1000}},
             "out": output("spin")}
    started = time.perf_counter()
    outcome = harness.run(graph, sink=interrupt_on_progress, interrupt=flag)
    assert outcome.result.status == "interrupted"
    assert outcome.result.failure.node_id == "spin"
    assert time.perf_counter() - started < 5.0
    progress = [event.value for event in outcome.events if isinstance(event, NodeProgress)]
    assert max(progress) < 50


def test_ten_thousand_node_chain_validates_runs_and_requeues(harness: Harness) -> None:
    graph = {"0": image(size=1)}
    for index in range(1, 10_001):
        graph[str(index)] = invert(str(index - 1))
    graph["out"] = output("10000")
    first = harness.run(graph)
    assert first.result.status == "success" and len(first.ran) == 10_002
    assert torch.equal(first.result.values["10000"][0][0], torch.ones(1, 1, 1, 3))
    assert harness.run(graph).ran == []


@pytest.mark.parametrize("policy, reruns", [("classic", False), ("lru:100", False), ("none", True)])
def test_cache_policies(folders: Folders, policy: str, reruns: bool) -> None:
    harness = Harness(folders, policy)
    graph = {"a": image(), "b": invert("a"), "out": output("b")}
    harness.run(graph)
    assert bool(harness.run(graph).ran) is reruns


def test_lru_keeps_results_of_older_prompts_that_classic_drops(folders: Folders) -> None:
    first = {"a": image("WHITE"), "out": output("a")}
    second = {"a": image("BLACK"), "out": output("a")}
    classic, lru = Harness(folders, "classic"), Harness(folders, "lru:10")
    for harness in (classic, lru):
        harness.run(first)
        harness.run(second)
    assert classic.run(first).ran == ["a", "out"]
    assert lru.run(first).ran == []


def test_impure_nodes_rerun_and_invalidate_their_dependents(harness: Harness) -> None:
    graph = {"v": {"class_type": "StubImpure", "inputs": {"value": 1.0}},
             "add": {"class_type": "StubAdd", "inputs": {"a": ["v", 0], "b": 1.0}}, "out": output("add")}
    harness.run(graph)
    assert set(harness.run(graph).ran) == {"v", "add", "out"}


def test_host_memory_budget_drops_entries_which_are_recomputed(folders: Folders) -> None:
    budget = MemoryBudget(device=torch.device("cpu"), device_bytes=0, host_bytes=3000)
    harness = Harness(folders, "classic", budget)
    graph = {"a": image(size=16), "b": invert("a"), "c": invert("b"), "out": output("c")}  # 3 KiB per image
    harness.run(graph)
    assert harness.executor.cache.host_total <= 3000
    graph["d"], graph["out2"] = invert("c"), output("d")  # a new consumer of an intermediate that no longer fits
    second = harness.run(graph)
    assert "c" in second.ran and "out" not in second.ran
    assert second.result.outputs["out2"] == second.result.outputs["out"]


def test_unbounded_budget_keeps_intermediates(harness: Harness) -> None:
    graph = {"a": image(size=16), "b": invert("a"), "c": invert("b"), "out": output("c")}
    harness.run(graph)
    graph["d"], graph["out2"] = invert("c"), output("d")
    assert sorted(harness.run(graph).ran) == ["d", "out2"]


def test_folders_fixture_is_isolated(folders: Folders, tmp_path: Path) -> None:
    assert folders.input_dir.is_relative_to(tmp_path)

"""Models stay loaded across prompts: the executor caches references, the model manager the modules.

Read counters (`ModelManager.loads_by_key`), not timings, show that nothing is read twice.
"""

from __future__ import annotations

import torch

from engine.cache import MemoryBudget
from engine.paths import Folders
from engine.registry import NodeRegistry
from modeling.model_refs import ModelRef
from tests.fixtures.pipeline import Pipeline
from tests.nodes.generation.conftest import FOLDER_CHECKPOINT, SINGLE_CHECKPOINT
from tests.nodes.generation.test_generation_graphs import text_to_image


def _with_prompt(graph: dict, text: str) -> dict:
    graph["pos"]["inputs"]["text"] = text
    return graph


def test_a_changed_prompt_reads_no_weights_again(pipeline: Pipeline) -> None:
    first = pipeline.run(text_to_image())
    assert pipeline.executor.models.loads == 3  # diffusion model, text encoder, VAE
    second = pipeline.run(_with_prompt(text_to_image(), "a green square on a white background"))
    assert "ckpt" in second.cached and "sample" in second.ran
    assert pipeline.executor.models.loads == 3
    assert not torch.equal(first.value("decode"), second.value("decode"))


def test_the_output_cache_holds_references_not_modules(pipeline: Pipeline) -> None:
    outcome = pipeline.run(text_to_image())
    references = outcome.result.values["ckpt"]
    assert all(isinstance(item, ModelRef) for (item,) in references)


def test_switching_between_two_workflows_on_two_models_reads_each_file_once(registry: NodeRegistry,
                                                                            folders: Folders) -> None:
    # The classic output cache forgets the loader of a model the current prompt does not use;
    # the model manager still holds its weights, so switching back reads nothing.
    pipeline = Pipeline(registry, folders, budget=MemoryBudget(torch.device("cpu"), 2**30, 2**30))
    for _ in range(3):
        pipeline.run(text_to_image(checkpoint=FOLDER_CHECKPOINT))
        pipeline.run(text_to_image(checkpoint=SINGLE_CHECKPOINT))
    loads = pipeline.executor.models.loads_by_key
    assert len(loads) == 6 and set(loads.values()) == {1}


def test_free_with_unload_models_empties_the_manager(pipeline: Pipeline) -> None:
    pipeline.run(text_to_image())
    assert len(pipeline.executor.models.stats()["loaded"]) == 3
    pipeline.executor.free(free_memory=True, unload_models=True)
    assert pipeline.executor.models.stats()["loaded"] == []
    pipeline.run(text_to_image())
    assert pipeline.executor.models.loads == 6

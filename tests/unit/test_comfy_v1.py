"""ComfyUI V1 classes compiled to NodeSpecs, their hooks, the shims and the pack loader.

The sample packs live in tests/fixtures/custom_nodes/ (hand-written; see its README).
Hooks are called directly with CURRENT_NODE_CONTEXT set by the test, as the executor does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.cache import OutputCache
from engine.comfy_packs import FLOWMILL_ROOT, SHIMS_DIR, load_custom_nodes, shadowed_flowmill_names
from engine.comfy_v1 import V1ClassError, spec_from_v1_class
from engine.context import CURRENT_NODE_CONTEXT, Interrupted, NodeContext
from engine.executor import Executor, RunRequest
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.spec import ExecutionBlocker, NodeHooks, NodeOutput, NodeSpec
from engine.validation import validate_prompt

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "custom_nodes"
SHIM_ROOTS = ("comfy", "comfy_execution", "comfy_api")
PACK_ROOT = "custom_nodes"


def _is_pack_or_shim(name: str) -> bool:
    root = name.split(".", 1)[0]
    return root in SHIM_ROOTS or root == PACK_ROOT


@pytest.fixture(autouse=True)
def isolated_imports() -> Iterator[None]:
    """Undo what loading packs does to the interpreter: sys.path entries and imported modules."""
    saved_path = list(sys.path)
    saved_modules = {name for name in sys.modules if _is_pack_or_shim(name)}
    yield
    sys.path[:] = saved_path
    for name in [name for name in sys.modules if _is_pack_or_shim(name) and name not in saved_modules]:
        del sys.modules[name]


@pytest.fixture
def loaded() -> tuple[NodeRegistry, list[str]]:
    registry = NodeRegistry()
    names = load_custom_nodes(registry, PACKS)
    return registry, names


@pytest.fixture
def registry(loaded: tuple[NodeRegistry, list[str]]) -> NodeRegistry:
    return loaded[0]


@pytest.fixture
def reports() -> list[tuple[float, float, Any]]:
    return []


@pytest.fixture
def node_context(folders: Folders, reports: list[tuple[float, float, Any]]) -> Iterator[NodeContext]:
    """The context the executor would set around a call of node "7"."""
    context = NodeContext(
        node_id="7",
        display_node_id="7",
        prompt_id="prompt-1",
        folders=folders,
        report=lambda value, total, preview: reports.append((value, total, preview)),
    )
    token = CURRENT_NODE_CONTEXT.set(context)
    yield context
    CURRENT_NODE_CONTEXT.reset(token)


def _spec(registry: NodeRegistry, node_id: str) -> NodeSpec:
    spec = registry.get(node_id)
    assert spec is not None, f"{node_id} was not registered; failures: {registry.load_failures}"
    return spec


def _hooks(registry: NodeRegistry, node_id: str) -> NodeHooks:
    return _spec(registry, node_id).make_hooks()


def _failure_text(registry: NodeRegistry, pack: str) -> str:
    return "\n".join(failure.error for failure in registry.load_failures if failure.name == pack)


# --- discovery -----------------------------------------------------------------------------


def test_loads_every_pack_and_reports_the_broken_one(loaded: tuple[NodeRegistry, list[str]]) -> None:
    registry, names = loaded
    assert names == ["sample_pack", "single_file_pack", "web_escape_pack", "web_pack", "zz_collision_pack"]
    broken = [failure for failure in registry.load_failures if failure.name == "broken_pack"]
    assert len(broken) == 1
    assert broken[0].path == str(PACKS / "broken_pack")
    assert "RuntimeError: broken_pack exploded on import" in broken[0].error
    assert "Traceback" in broken[0].error
    assert "custom_nodes.broken_pack" not in sys.modules
    assert "SampleImageInvert" in registry and "SingleFileConcat" in registry


def test_disabled_hidden_and_non_packages_are_never_imported(loaded: tuple[NodeRegistry, list[str]]) -> None:
    registry, names = loaded
    for skipped in ("skipped_pack", "skipped_pack.disabled", ".hidden_pack", "not_a_pack", "README"):
        assert skipped not in names
    assert not any("skipped" in name or "hidden" in name or "not_a_pack" in name for name in sys.modules)
    assert {failure.name for failure in registry.load_failures} <= {
        "broken_pack",
        "web_escape_pack",
        "zz_collision_pack",
    }


def test_safe_mode_imports_nothing() -> None:
    before_modules = set(sys.modules)
    before_path = list(sys.path)
    registry = NodeRegistry()
    assert load_custom_nodes(registry, PACKS, enabled=False) == []
    assert len(registry) == 0 and registry.load_failures == [] and registry.web_directories == {}
    assert set(sys.modules) == before_modules
    assert not any(_is_pack_or_shim(name) for name in sys.modules)
    assert sys.path == before_path


def test_allow_list_limits_what_is_imported() -> None:
    registry = NodeRegistry()
    assert load_custom_nodes(registry, PACKS, allow={"single_file_pack"}) == ["single_file_pack"]
    assert [spec.id for spec in registry] == ["SingleFileConcat"]
    assert "custom_nodes.sample_pack" not in sys.modules
    assert "custom_nodes.broken_pack" not in sys.modules and registry.load_failures == []


def test_missing_directory_loads_nothing(tmp_path: Path) -> None:
    assert load_custom_nodes(NodeRegistry(), tmp_path / "absent") == []


def test_loading_again_into_another_registry_reuses_the_modules(registry: NodeRegistry) -> None:
    module = sys.modules["custom_nodes.sample_pack"]
    second = NodeRegistry()
    load_custom_nodes(second, PACKS)
    assert sys.modules["custom_nodes.sample_pack"] is module
    assert [spec.id for spec in second] == [spec.id for spec in registry]


def test_a_second_pack_with_the_same_name_is_a_failure(registry: NodeRegistry, tmp_path: Path) -> None:
    (tmp_path / "sample_pack").mkdir()
    (tmp_path / "sample_pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    other = NodeRegistry()
    assert load_custom_nodes(other, tmp_path) == []
    assert "already loaded" in _failure_text(other, "sample_pack")


def test_colliding_and_malformed_nodes_fail_alone(registry: NodeRegistry) -> None:
    text = _failure_text(registry, "zz_collision_pack")
    assert "node 'SampleImageInvert' skipped" in text and "registered twice" in text
    assert "node 'MissingComma' skipped" in text and "missing trailing comma" in text
    assert _spec(registry, "SampleImageInvert").python_module == "custom_nodes.sample_pack"
    assert _spec(registry, "CollisionSurvivor").python_module == "custom_nodes.zz_collision_pack"
    assert "MissingComma" not in registry


def test_web_directory_inside_the_pack_is_recorded(registry: NodeRegistry) -> None:
    expected = (PACKS / "web_pack" / "js").resolve()
    assert registry.web_directories == {"web_pack": str(expected)}
    assert "outside the pack folder" in _failure_text(registry, "web_escape_pack")
    assert "web_escape_pack" not in registry.web_directories and "EscapeNoop" in registry


def test_web_directory_of_a_single_file_pack_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lonely.py").write_text('NODE_CLASS_MAPPINGS = {}\nWEB_DIRECTORY = "."\n')
    registry = NodeRegistry()
    assert load_custom_nodes(registry, tmp_path) == ["lonely"]
    assert registry.web_directories == {}
    assert "single-file pack" in _failure_text(registry, "lonely")


def test_pack_calling_sys_exit_is_a_failure_not_an_exit(tmp_path: Path) -> None:
    (tmp_path / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "v3_pack.py").write_text("def comfy_entrypoint():\n    return None\n")
    (tmp_path / "odd_web").mkdir()
    (tmp_path / "odd_web" / "__init__.py").write_text("WEB_DIRECTORY = 5\nNODE_CLASS_MAPPINGS = {}\n")
    registry = NodeRegistry()
    assert load_custom_nodes(registry, tmp_path) == ["odd_web", "v3_pack"]
    assert "SystemExit" in _failure_text(registry, "quitter")
    assert "V3 packs" in _failure_text(registry, "v3_pack")
    assert "TypeError" in _failure_text(registry, "odd_web")


def test_cache_provider_packs_import_and_v3_packs_fail_cleanly(tmp_path: Path) -> None:
    (tmp_path / "cache_pack.py").write_text(
        "from comfy_api.latest._caching import CacheProvider\n"
        "from comfy_execution.cache_provider import register_cache_provider\n"
        "class Recorder(CacheProvider):\n"
        "    pass\n"
        "register_cache_provider(Recorder())\n"
        "NODE_CLASS_MAPPINGS = {}\n"
    )
    (tmp_path / "v3_io_pack.py").write_text("from comfy_api.latest import io\n")
    registry = NodeRegistry()
    assert load_custom_nodes(registry, tmp_path) == ["cache_pack"]
    assert "ImportError" in _failure_text(registry, "v3_io_pack")


# --- sys.path and shims --------------------------------------------------------------------


def test_shims_never_shadow_flowmill_packages(registry: NodeRegistry) -> None:
    assert shadowed_flowmill_names() == frozenset()
    assert not (SHIMS_DIR / "__init__.py").exists()  # not a package: no engine.comfy_shims.* copies
    for name in ("engine", "server", "nodes"):
        found = importlib.util.find_spec(name)
        assert found is not None and found.origin is not None
        assert Path(found.origin).resolve().is_relative_to(FLOWMILL_ROOT)
        assert not Path(found.origin).resolve().is_relative_to(SHIMS_DIR)


def test_shims_stay_importable_at_the_end_of_sys_path(registry: NodeRegistry) -> None:
    assert sys.path[-1] == str(SHIMS_DIR)
    assert sys.path.count(str(SHIMS_DIR)) == 1


def test_shims_without_any_loaded_pack_leave_sys_path_alone(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("raise ImportError('missing dependency')\n")
    before = list(sys.path)
    assert load_custom_nodes(NodeRegistry(), tmp_path) == []
    assert sys.path == before


def test_shim_modules_resolve_lazily_when_a_node_runs(
    registry: NodeRegistry, node_context: NodeContext, reports: list[tuple[float, float, Any]]
) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in SHIM_ROOTS]:
        del sys.modules[name]  # as if nothing had imported them during loading
    result = _hooks(registry, "SampleProgress").run(steps=3)
    assert result == (3,)
    assert reports == [(1, 3, None), (2, 3, None), (3, 3, None), (3, 3, "preview-image")]


def test_shim_reexports_are_flowmill_objects(registry: NodeRegistry) -> None:
    import comfy.model_management
    import comfy_execution.graph
    import comfy_execution.graph_utils

    import engine.graph_builder

    assert comfy_execution.graph.ExecutionBlocker is ExecutionBlocker
    assert comfy_execution.graph_utils.GraphBuilder is engine.graph_builder.GraphBuilder
    assert comfy_execution.graph_utils.is_link is engine.graph_builder.is_link
    assert comfy.model_management.InterruptProcessingException is Interrupted
    assert str(comfy.model_management.get_torch_device()) == "cpu"


def test_comfy_types_io_names(registry: NodeRegistry) -> None:
    from comfy.comfy_types import IO, CheckLazyMixin
    from comfy.comfy_types.node_typing import ComfyNodeABC

    assert IO.ANY == "*" and str(IO.IMAGE) == "IMAGE" and f"{IO.NUMBER}" == "FLOAT,INT"
    assert CheckLazyMixin().check_lazy_status(a=None, b=1) == ["a"]
    assert inspect.isabstract(ComfyNodeABC)


def test_interrupts_reach_nodes_through_the_shims(registry: NodeRegistry, node_context: NodeContext) -> None:
    import comfy.model_management

    node_context.interrupt.set()
    assert comfy.model_management.processing_interrupted()
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        _hooks(registry, "SampleProgress").run(steps=2)


def test_progress_outside_a_node_call_is_dropped(registry: NodeRegistry) -> None:
    from comfy.utils import ProgressBar

    bar = ProgressBar(2)
    bar.update(5)
    assert bar.current == 2  # clamped to the total, and no context to report to


def test_comfy_api_progress(
    registry: NodeRegistry, node_context: NodeContext, reports: list[tuple[float, float, Any]]
) -> None:
    from comfy_api.v0_0_2 import ComfyAPI, ComfyAPISync

    ComfyAPISync().execution.set_progress(value=0.5, max_value=1.0)
    asyncio.run(ComfyAPI().execution.set_progress(value=1.0, max_value=1.0, preview_image=torch.ones(1, 2, 2, 3)))
    assert reports[0] == (0.5, 1.0, None)
    assert reports[1][:2] == (1.0, 1.0) and reports[1][2].size == (2, 2)


# --- compiled specs and /object_info -------------------------------------------------------


def test_object_info_matches_comfyui_v1_shape(registry: NodeRegistry) -> None:
    info = registry.object_info()["SampleIntMath"]
    assert info == {
        "input": {
            "required": {
                "a": ["INT", {"default": 0, "min": -0xFFFFFFFFFFFFFFFF, "max": 0xFFFFFFFFFFFFFFFF, "step": 1}],
                "b": ["INT", {"default": 1, "min": -10, "max": 10, "step": 2, "tooltip": "second operand"}],
                "operation": [["add", "subtract", "multiply"]],
            },
        },
        "input_order": {"required": ["a", "b", "operation"]},
        "output": ["INT"],
        "output_is_list": [False],
        "output_name": ["result"],
        "output_tooltips": ["the computed value"],
        "name": "SampleIntMath",
        "display_name": "Int Math (sample)",
        "description": "",
        "python_module": "custom_nodes.sample_pack",
        "category": "sample/math",
        "output_node": False,
        "deprecated": False,
        "experimental": False,
    }


def test_object_info_optional_and_hidden_sections(registry: NodeRegistry) -> None:
    info = registry.object_info()["SampleOptionalHidden"]
    assert info["input"] == {
        "required": {"text": ["STRING", {"default": "hello", "multiline": True}]},
        "optional": {"suffix": ["STRING", {"forceInput": True}], "mask": ["IMAGE,MASK"]},
        "hidden": {
            "unique_id": "UNIQUE_ID",
            "prompt": "PROMPT",
            "extra_pnginfo": "EXTRA_PNGINFO",
            "dynprompt": "DYNPROMPT",
        },
    }
    assert info["input_order"] == {"required": ["text"], "optional": ["suffix", "mask"]}
    assert info["output_name"] == ["text", "node_id"]
    assert info["display_name"] == "SampleOptionalHidden"
    assert info["category"] == "sd"  # ComfyUI's default category
    hidden = [item for item in _spec(registry, "SampleOptionalHidden").inputs if item.kind == "hidden"]
    assert [(item.name, item.type) for item in hidden] == [
        ("unique_id", "UNIQUE_ID"),
        ("prompt", "PROMPT"),
        ("extra_pnginfo", "EXTRA_PNGINFO"),
        ("dynprompt", "DYNPROMPT"),
    ]


def test_object_info_output_node_and_defaults(registry: NodeRegistry) -> None:
    everything = registry.object_info()
    invert = everything["SampleImageInvert"]
    assert invert["input"] == {"required": {"image": ["IMAGE"]}}
    assert (invert["output"], invert["output_name"], invert["output_is_list"]) == (["IMAGE"], ["IMAGE"], [False])
    assert invert["description"] == "Invert the colours of an image."
    assert invert["display_name"] == "Invert Image (sample)"
    save = everything["SampleSaveText"]
    assert save["output_node"] is True and save["category"] == "sample/output"
    assert everything["SamplePreviewOnly"]["output"] == []
    single = everything["SingleFileConcat"]
    assert single["python_module"] == "custom_nodes.single_file_pack"
    assert single["display_name"] == "Concat (single file)"
    assert single["output"] == ["STRING", "*"]
    assert single["input"]["required"]["first"] == ["STRING", {"default": "a"}]
    assert type(single["input"]["required"]["first"][0]) is str  # IO members become plain strings
    assert single["description"] == "Join two strings with a separator."


def test_combo_forms(registry: NodeRegistry) -> None:
    spec = _spec(registry, "SampleCombo")
    mode, legacy = spec.inputs
    assert (mode.type, mode.choices, mode.default) == ("COMBO", ("fast", "slow"), "slow")
    assert mode.options == {"options": ["fast", "slow"], "default": "slow"}
    assert (legacy.type, legacy.choices, legacy.default) == ("COMBO", ("x", "y", "z"), "y")
    assert [output.type for output in spec.outputs] == ["STRING", "COMBO"]


def test_output_lists_input_lists_and_flags(registry: NodeRegistry) -> None:
    make_list = _spec(registry, "SampleMakeList")
    assert [(output.name, output.is_list) for output in make_list.outputs] == [("items", True), ("count", False)]
    assert _spec(registry, "SampleListSum").input_is_list
    assert not make_list.input_is_list
    counter = _spec(registry, "SampleCounter")
    assert counter.not_idempotent and counter.deprecated and counter.experimental
    assert counter.keeps_instance and not counter.has_fingerprint and not counter.has_validate


def test_lazy_inputs(registry: NodeRegistry) -> None:
    spec = _spec(registry, "SampleLazyMix")
    assert [(item.name, item.lazy) for item in spec.inputs] == [("first", True), ("second", True), ("weight", False)]
    assert spec.input("first").options == {"lazy": True}


def test_validate_metadata(registry: NodeRegistry) -> None:
    validated = _spec(registry, "SampleValidated")
    assert validated.has_validate and validated.validate_wants_types
    assert validated.validated_inputs == frozenset({"value"})
    kwargs = _spec(registry, "SampleKwargsValidation")
    assert not kwargs.validate_wants_types and kwargs.validated_inputs == frozenset({"value"})
    assigned = _spec(registry, "SampleAssignedValidation")
    assert assigned.validate_wants_types and assigned.validated_inputs == frozenset()
    instance = _spec(registry, "SampleInstanceMethods")
    assert instance.validated_inputs == frozenset({"value"}) and not instance.validate_wants_types


# --- hooks ---------------------------------------------------------------------------------


def test_run_returns_tuples(registry: NodeRegistry) -> None:
    image = torch.zeros(1, 2, 2, 3)
    (inverted,) = _hooks(registry, "SampleImageInvert").run(image=image)
    assert torch.equal(inverted, torch.ones(1, 2, 2, 3))
    math_hooks = _hooks(registry, "SampleIntMath")
    assert math_hooks.run(a=2, b=3, operation="add") == (5,)
    assert math_hooks.run(a=2, b=3, operation="subtract") == (-1,)  # a returned list becomes a tuple
    assert _hooks(registry, "SingleFileConcat").run(first="a", second="b") == ("a b", "a b")


def test_run_forwards_hidden_inputs_by_name(registry: NodeRegistry) -> None:
    hooks = _hooks(registry, "SampleOptionalHidden")
    result = hooks.run(
        text="hi", suffix="!", unique_id="5", prompt={"5": {}, "6": {}}, extra_pnginfo=None, dynprompt=object()
    )
    assert result == ("hi! (2 nodes)", "5")


def test_output_node_dict_becomes_node_output(registry: NodeRegistry) -> None:
    result = _hooks(registry, "SampleSaveText").run(text="saved")
    assert result == NodeOutput(values=("saved",), ui={"text": ["saved"]}, expand=None)
    assert _hooks(registry, "SamplePreviewOnly").run(anything=1) == ()
    assert _hooks(registry, "EscapeNoop").run() == NodeOutput(values=(), ui={}, expand=None)


def test_expansion_returns_a_graph_prefixed_by_the_running_node(
    registry: NodeRegistry, node_context: NodeContext
) -> None:
    hooks = _hooks(registry, "SampleExpandDouble")
    result = hooks.run(value=4)
    assert isinstance(result, NodeOutput)
    assert result.values == (["7.0.0.2", 0],)
    assert result.expand == {
        "7.0.0.1": {"class_type": "SampleIntMath", "inputs": {"a": 4, "b": 4, "operation": "add"}},
        "7.0.0.2": {"class_type": "SampleIntMath", "inputs": {"a": ["7.0.0.1", 0], "b": 2, "operation": "multiply"}},
    }
    # Each call starts again at graph index 0: the same ids on every run.
    assert hooks.run(value=4).expand == result.expand


def test_async_run_stays_awaitable(registry: NodeRegistry, node_context: NodeContext) -> None:
    pending = _hooks(registry, "SampleAsyncDouble").run(value=1.5)
    assert inspect.isawaitable(pending)
    assert asyncio.run(pending) == (3.0,)
    expanding = _hooks(registry, "SampleAsyncExpand").run(value=2)
    result = asyncio.run(expanding)
    assert isinstance(result, NodeOutput) and list(result.expand) == ["7.0.0.1"]


def test_check_lazy_asks_for_unevaluated_inputs(registry: NodeRegistry) -> None:
    hooks = _hooks(registry, "SampleLazyMix")
    assert hooks.check_lazy is not None
    assert hooks.check_lazy(first=None, second=None, weight=0.0) == ["first"]
    assert hooks.check_lazy(first=None, second=None, weight=0.5) == ["first", "second"]
    assert hooks.check_lazy(first=torch.ones(1), second=None, weight=1.0) == ["second"]
    image = torch.ones(1, 1, 1, 3)
    (mixed,) = hooks.run(first=image, second=image * 3, weight=0.5)
    assert torch.allclose(mixed, image * 2)
    assert _hooks(registry, "SampleInstanceMethods").check_lazy(value=1) == []  # None means "nothing"


def test_fingerprint_nan_and_method_kinds(registry: NodeRegistry) -> None:
    spec = _spec(registry, "SampleAlwaysChanged")
    assert spec.has_fingerprint
    assert math.isnan(spec.make_hooks().fingerprint(seed=1))
    assert _hooks(registry, "SampleStaticFingerprint").fingerprint(value=2) == "static:2"
    assert _hooks(registry, "SampleInstanceMethods").fingerprint(value=2) == "instance:2"


def test_hooks_drop_keywords_their_method_does_not_take(registry: NodeRegistry) -> None:
    hooks = _hooks(registry, "SampleAlwaysChanged")
    assert math.isnan(hooks.fingerprint(seed=None, unique_id="7", prompt={}))
    lazy = _hooks(registry, "SampleLazyMix")
    assert lazy.check_lazy(first=None, second=None, weight=0.0, unique_id="7") == ["first"]


def test_validate_receives_input_types(registry: NodeRegistry) -> None:
    hooks = _hooks(registry, "SampleValidated")
    assert hooks.validate(value=3, source=None, input_types={"source": "IMAGE"}) is True
    assert hooks.validate(value=7, input_types={}) == "7 is not allowed"
    assert "got LATENT" in hooks.validate(value=None, input_types={"source": "LATENT"})


def test_validate_method_kinds(registry: NodeRegistry) -> None:
    assert _hooks(registry, "SampleStaticFingerprint").validate(value=3) == "3 is rejected by a staticmethod"
    assert _hooks(registry, "SampleInstanceMethods").validate(value=4) == "4 is rejected by an instance method"
    assert _hooks(registry, "SampleInstanceMethods").validate(value=1, input_types={}) is True
    kwargs = _hooks(registry, "SampleKwargsValidation")
    assert kwargs.validate(value=5) == "5 is rejected by a **kwargs validator"
    assigned = _hooks(registry, "SampleAssignedValidation")
    assert assigned.validate(value=None, input_types={"value": "INT"}) == "value must not be linked"
    assert assigned.validate(value=1, input_types={}) is True


def test_lists_are_passed_whole_and_returned_as_given(registry: NodeRegistry) -> None:
    assert _hooks(registry, "SampleMakeList").run(count=3) == ([0, 1, 2], 3)
    assert _hooks(registry, "SampleListSum").run(items=[1, 2, 3]) == (6,)


def test_execution_blockers(registry: NodeRegistry) -> None:
    hooks = _hooks(registry, "SampleBlocker")
    blocked = hooks.run(value=1, block=True)
    assert blocked == (ExecutionBlocker("blocked on purpose"),) * 2  # a bare blocker covers every output
    value, silent = hooks.run(value=1, block=False)
    assert value == 1 and isinstance(silent, ExecutionBlocker) and silent.message is None


def test_each_make_hooks_builds_one_instance(registry: NodeRegistry) -> None:
    spec = _spec(registry, "SampleCounter")
    first, second = spec.make_hooks(), spec.make_hooks()
    assert first.run() == (1,) and first.run() == (2,)
    assert second.run() == (1,)
    assert not first.wants_context


# --- spec_from_v1_class directly -----------------------------------------------------------


def _class(**attributes: Any) -> type:
    """A V1 class with one required IMAGE input and one IMAGE output, plus `attributes`."""
    body: dict[str, Any] = {
        "INPUT_TYPES": classmethod(lambda cls: {"required": {"image": ("IMAGE",)}}),
        "RETURN_TYPES": ("IMAGE",),
        "FUNCTION": "run",
        "run": lambda self, image: (image,),
    }
    body.update(attributes)
    return type("Inline", (), body)


def test_malformed_classes_raise_early_with_the_node_name() -> None:
    cases = {
        "FUNCTION must name": _class(FUNCTION=None),
        "no such method": _class(FUNCTION="missing"),
        "missing trailing comma": _class(RETURN_TYPES="IMAGE"),
        "must be (TYPE,)": _class(INPUT_TYPES=classmethod(lambda cls: {"required": {"image": 3}})),
        "options must be a dict": _class(INPUT_TYPES=classmethod(lambda cls: {"required": {"x": ("INT", 1)}})),
        "not a dict": _class(INPUT_TYPES=classmethod(lambda cls: None)),
    }
    for message, cls in cases.items():
        with pytest.raises(V1ClassError, match=re.escape(message)) as raised:
            spec_from_v1_class("Broken", cls, None, "custom_nodes.inline")
        assert "'Broken'" in str(raised.value)


def test_names_tooltips_and_list_flags_are_padded_to_the_outputs() -> None:
    cls = _class(
        RETURN_TYPES=("IMAGE", "MASK", "INT"),
        RETURN_NAMES=("picture",),
        OUTPUT_IS_LIST=(True,),
        OUTPUT_TOOLTIPS=("the image",),
    )
    spec = spec_from_v1_class("Padded", cls, "Padded!", "custom_nodes.inline")
    assert [(o.type, o.name, o.is_list, o.tooltip) for o in spec.outputs] == [
        ("IMAGE", "picture", True, "the image"),
        ("MASK", "MASK", False, None),
        ("INT", "INT", False, None),
    ]
    assert spec.display_name == "Padded!" and spec.python_module == "custom_nodes.inline"
    assert spec_from_v1_class("AllLists", _class(OUTPUT_IS_LIST=True), None, "m").outputs[0].is_list


def test_run_rejects_results_of_the_wrong_shape() -> None:
    returns_none = _class(run=lambda self, image: None)
    hooks = spec_from_v1_class("ReturnsNone", returns_none, None, "m").make_hooks()
    with pytest.raises(TypeError, match="'ReturnsNone' returned NoneType"):
        hooks.run(image=1)
    returns_tensor = _class(run=lambda self, image: image)
    with pytest.raises(TypeError, match="returned Tensor"):
        spec_from_v1_class("Bare", returns_tensor, None, "m").make_hooks().run(image=torch.ones(1))
    bad_result = _class(run=lambda self, image: {"result": image})
    with pytest.raises(TypeError, match="'result' must be a tuple"):
        spec_from_v1_class("BadResult", bad_result, None, "m").make_hooks().run(image=torch.ones(1))


def test_hidden_inputs_of_other_types_keep_their_type() -> None:
    cls = _class(
        INPUT_TYPES=classmethod(
            lambda cls: {"required": {}, "hidden": {"seed_in": ("*",), "token": "AUTH_TOKEN_COMFY_ORG"}}
        )
    )
    spec = spec_from_v1_class("Hidden", cls, None, "m")
    assert [(item.name, item.kind, item.type) for item in spec.inputs] == [
        ("seed_in", "hidden", "*"),
        ("token", "hidden", "AUTH_TOKEN_COMFY_ORG"),
    ]


class _EchoUniqueId:
    """An output node that reports its own id: a hidden UNIQUE_ID, no NOT_IDEMPOTENT."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {"required": {"text": ("STRING", {"default": "same"})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    DESCRIPTION = "Reports its own node id."

    def run(self, text: str, unique_id: str) -> dict[str, Any]:
        return {"ui": {"id": [unique_id]}}


def test_a_hidden_unique_id_keys_the_cache_by_node_id(folders: Folders) -> None:
    registry = NodeRegistry()
    registry.register(spec_from_v1_class("EchoUniqueId", _EchoUniqueId, None, "custom_nodes.inline"))
    assert registry.get("EchoUniqueId").not_idempotent  # type: ignore[union-attr]
    executor = Executor(registry, OutputCache(), folders)
    prompt = {"1": {"class_type": "EchoUniqueId", "inputs": {"text": "same"}},
              "2": {"class_type": "EchoUniqueId", "inputs": {"text": "same"}}}
    checked = validate_prompt(prompt, registry, folders=folders)
    assert checked.ok, checked.node_errors
    for run in ("first", "re-run"):
        result = executor.run(RunRequest(f"prompt-{run}", checked.prompt, checked.outputs))
        assert result.status == "success"
        assert {node: ui["id"] for node, ui in result.outputs.items()} == {"1": ["1"], "2": ["2"]}, run

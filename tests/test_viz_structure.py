"""rlmorning.viz stays layered: no import cycles among its modules (function-local imports included), and it
asks agents for capabilities through the protocols of ``agents/capabilities.py``, not by probing attributes."""

from __future__ import annotations

import ast
from pathlib import Path

import gymnasium as gym
import numpy as np

import rlmorning.viz
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.capabilities import HasEncoder, HasMemory, HasWorldModel, PolicyOutputs, QValues
from rlmorning.agents.dqn import DQNAgent, DQNConfig

VIZ = Path(rlmorning.viz.__file__).parent


def viz_import_graph() -> dict[str, set[str]]:
    """module -> viz modules it imports anywhere in its file (typing-only imports excluded)."""
    graph: dict[str, set[str]] = {}
    for path in VIZ.glob("*.py"):
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("rlmorning.viz."):
                    deps.add(node.module.split(".")[2])
                elif node.module == "rlmorning.viz":
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[2] for a in node.names if a.name.startswith("rlmorning.viz."))
        graph[path.stem] = deps - {path.stem}
    return graph


def test_viz_has_no_import_cycles() -> None:
    graph = viz_import_graph()
    assert "ansi" in graph["video"] and "kstep" in graph["curves"]  # the graph sees real edges
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(stack + [node, dep])}"
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_viz_does_not_probe_agents_with_getattr() -> None:
    for path in VIZ.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr"):
                target = node.args[0]
                assert not (isinstance(target, ast.Name) and target.id == "agent"), f"{path.name}:{node.lineno}"


def test_dqn_offers_the_capabilities_viz_uses() -> None:
    agent = DQNAgent(DQNConfig(encoder="minatar", buffer_size=10),
                     AgentSetting(gym.spaces.Box(0, 1, (4, 10, 10), np.uint8), gym.spaces.Discrete(3), total_steps=10,
                                  inference=True))
    assert isinstance(agent, QValues) and isinstance(agent, HasEncoder) and isinstance(agent, HasWorldModel)
    assert agent.encoder is agent.online.encoder and agent.world_model is None
    assert not isinstance(agent, HasMemory) and not isinstance(agent, PolicyOutputs)

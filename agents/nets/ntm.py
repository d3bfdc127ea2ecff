"""Memory cores for recurrent agents: the Neural Turing Machine (Graves et al. 2014) and an LSTM.

A *core* maps one input step ``x [B, in]`` and a recurrent state to features ``[B, out_dim]`` and the
next state: ``features, state = core(x, state)``. States are dicts of tensors with the batch as the
first axis, so the trainer, evaluation and checkpoints can select, reset and save rows.

The NTM's addressing (section 3.3 of the paper) is split into pure functions that the tests check
against hand-computed values::

    w_c = content_addressing(memory, key, beta)        # softmax(beta * cosine(key, M[i]))
    w_g = interpolate(w_c, w_prev, g)                  # g w_c + (1 - g) w_prev
    w_s = circular_shift(w_g, s)                       # w_s[i] = sum_j w_g[j] s[i - j]   (mod N)
    w   = sharpen(w_s, gamma)                          # w_s^gamma / sum(w_s^gamma),  gamma >= 1
    r   = read(memory, w)                              # r = sum_i w[i] M[i]
    M   = erase_add_write(memory, w, erase, add)       # M[i] (1 - w[i] e) + w[i] a

Numerical safety: epsilons in norms and normalisations, ``beta`` softly bounded by ``beta_max``,
controller outputs clipped to ``clip``; the agents clip gradients. Memory starts at a small constant
(Collier & Beel 2018, "Implementing Neural Turing Machines", found constant initialisation fastest),
and the head weightings start focused on slot 0 so a shift can walk the memory from the first step.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.errors import RlmError

EPS = 1e-8

State = dict[str, torch.Tensor]


# ------------------------------------------------------------------------------------ addressing
def cosine_similarity(key: torch.Tensor, memory: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Cosine similarity ``[B, H, N]`` of keys ``[B, H, M]`` with memory rows ``[B, N, M]`` (safe at zero)."""
    dot = key @ memory.transpose(1, 2)
    key_norm = torch.sqrt((key * key).sum(-1) + eps)  # [B, H]
    mem_norm = torch.sqrt((memory * memory).sum(-1) + eps)  # [B, N]
    return dot / (key_norm.unsqueeze(-1) * mem_norm.unsqueeze(1) + eps)


def content_addressing(memory: torch.Tensor, key: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Content weighting ``softmax_i(beta * cos(key, M[i]))`` ``[B, H, N]``; ``beta [B, H]`` >= 0."""
    return torch.softmax(beta.unsqueeze(-1) * cosine_similarity(key, memory), dim=-1)


def interpolate(w_content: torch.Tensor, w_prev: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Interpolation gate: ``g w_content + (1 - g) w_prev`` with ``g [B, H]`` in [0, 1]."""
    g = g.unsqueeze(-1)
    return g * w_content + (1.0 - g) * w_prev


def circular_shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Circular convolution of ``w [B, H, N]`` with shift weights ``s [B, H, 2k+1]`` over shifts ``-k..k``.

    ``s`` one-hot on shift ``+1`` moves a focus on slot ``i`` to slot ``i + 1`` (mod N).
    """
    k = (s.shape[-1] - 1) // 2
    if k == 0:
        return w * s
    padded = torch.cat([w[..., -k:], w, w[..., :k]], dim=-1)  # circular padding
    windows = padded.unfold(-1, 2 * k + 1, 1)  # [B, H, N, 2k+1]: window q of slot i holds w[i - k + q]
    return (windows * s.flip(-1).unsqueeze(-2)).sum(-1)


def sharpen(w: torch.Tensor, gamma: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``w^gamma / sum(w^gamma)`` with ``gamma [B, H]`` >= 1, computed as a softmax of ``gamma log w``
    (no underflow for large ``gamma``)."""
    return torch.softmax(gamma.unsqueeze(-1) * torch.log(w + eps), dim=-1)


def address(memory: torch.Tensor, w_prev: torch.Tensor, key: torch.Tensor, beta: torch.Tensor,
            g: torch.Tensor, s: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The full addressing pipeline of Graves et al. (2014), Figure 2."""
    w = content_addressing(memory, key, beta)
    w = interpolate(w, w_prev, g)
    w = circular_shift(w, s)
    return sharpen(w, gamma)


def read(memory: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Read vectors ``[B, R, M]``: ``w [B, R, N]`` times memory ``[B, N, M]``."""
    return w @ memory


def erase_add_write(memory: torch.Tensor, w: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """All write heads at once: ``M * prod_h(1 - w_h e_h^T) + sum_h w_h a_h^T``.

    ``w [B, W, N]``, ``erase`` in [0, 1] and ``add`` ``[B, W, M]``; erasing is multiplicative and adding
    additive, so the order of the heads does not matter (paper, section 3.2).
    """
    if w.shape[1] == 1:  # the common case, without the product over heads
        keep = 1.0 - w.transpose(1, 2) @ erase
    else:
        keep = torch.prod(1.0 - w.unsqueeze(-1) * erase.unsqueeze(2), dim=1)  # [B, N, M]
    return memory * keep + w.transpose(1, 2) @ add


def reset_rows(state: State, fresh: State, mask: torch.Tensor) -> State:
    """Rows of ``state`` where ``mask [B]`` is True replaced by those of ``fresh`` (new tensors)."""
    out = {}
    for k, v in state.items():
        m = mask.view(-1, *([1] * (v.dim() - 1)))
        out[k] = torch.where(m, fresh[k].to(v.dtype), v)
    return out


# ------------------------------------------------------------------------------------ cores
class Core(nn.Module, abc.ABC):
    """Base of the recurrent cores: ``forward(x, state) -> (features, state)``."""

    out_dim: int

    @abc.abstractmethod
    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """The state of ``batch`` fresh sequences."""

    def forward_sequence(self, xs: torch.Tensor, state: State, resets: torch.Tensor | None = None,
                         record: bool = False) -> tuple[torch.Tensor, State, list[State]]:
        """Run ``xs [T, B, in]``; ``resets [T, B]`` restarts rows before a step. Returns features
        ``[T, B, out_dim]``, the final state and (``record``) the state after every step."""
        fresh = self.initial_state(xs.shape[1], xs.device) if resets is not None else None
        feats, states = [], []
        for t in range(xs.shape[0]):
            if resets is not None and fresh is not None:
                state = reset_rows(state, fresh, resets[t])
            f, state = self(xs[t], state)
            feats.append(f)
            if record:
                states.append(state)
        return torch.stack(feats), state, states


class NTM(Core):
    """Neural Turing Machine: controller (LSTM or feed-forward) + memory ``N x M`` + read/write heads.

    Per step: the controller sees ``[x, previous reads]``; its output parameterises every head
    (key, ``beta``, ``g``, shift ``s``, ``gamma``; write heads also erase and add vectors); read heads
    read the memory as it was before this step's writes, then the write heads write. Features are
    ``[controller output, reads]``.
    """

    def __init__(self, input_size: int, *, controller: str = "lstm", controller_size: int = 100,
                 controller_layers: int = 1, memory_size: int = 128, memory_width: int = 20,
                 read_heads: int = 1, write_heads: int = 1, shift_range: int = 1, memory_init: float = 1e-6,
                 beta_max: float = 100.0, clip: float = 20.0) -> None:
        super().__init__()
        if controller not in ("lstm", "ff"):
            raise RlmError(f"controller must be lstm or ff, got '{controller}'")
        for name, v in (("controller_size", controller_size), ("controller_layers", controller_layers),
                        ("memory_size", memory_size), ("memory_width", memory_width),
                        ("read_heads", read_heads), ("write_heads", write_heads)):
            if v < 1:
                raise RlmError(f"config key '{name}' must be >= 1, got {v}")
        if not 0 <= shift_range < memory_size / 2:
            raise RlmError(f"shift_range must be in [0, memory_size/2), got {shift_range}")
        self.controller_kind = controller
        self.n, self.m = memory_size, memory_width
        self.r, self.w = read_heads, write_heads
        self.hidden, self.layers = controller_size, controller_layers
        self.shifts = 2 * shift_range + 1
        self.memory_init, self.beta_max, self.clip = float(memory_init), float(beta_max), float(clip)
        ctrl_in = input_size + read_heads * memory_width
        if controller == "lstm":
            self.cells = nn.ModuleList(
                nn.LSTMCell(ctrl_in if i == 0 else controller_size, controller_size) for i in range(controller_layers)
            )
        else:
            layers: list[nn.Module] = []
            for i in range(controller_layers):
                layers += [nn.Linear(ctrl_in if i == 0 else controller_size, controller_size), nn.ReLU()]
            self.ff = nn.Sequential(*layers)
        self.addr_size = memory_width + 3 + self.shifts  # key, beta, g, gamma, shift (every head)
        n_params = (read_heads + write_heads) * self.addr_size + write_heads * 2 * memory_width  # + erase, add
        self.heads = nn.Linear(controller_size, n_params)
        self.out_dim = controller_size + read_heads * memory_width

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Memory at ``memory_init``, weightings on slot 0, reads of that memory, zero controller state."""
        w0 = torch.zeros(batch, 1, self.n, device=device)
        w0[..., 0] = 1.0
        state: State = {
            "memory": torch.full((batch, self.n, self.m), self.memory_init, device=device),
            "read_w": w0.expand(batch, self.r, self.n).clone(),
            "write_w": w0.expand(batch, self.w, self.n).clone(),
            "reads": torch.full((batch, self.r, self.m), self.memory_init, device=device),
        }
        if self.controller_kind == "lstm":
            state["h"] = torch.zeros(batch, self.layers, self.hidden, device=device)
            state["c"] = torch.zeros(batch, self.layers, self.hidden, device=device)
        return state

    def _head_params(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """Controller projection ``[B, P]`` -> addressing parameters of all ``R + W`` heads (reads first)
        and the write heads' erase and add vectors."""
        b, m, s, h = params.shape[0], self.m, self.shifts, self.r + self.w
        addr = params[:, : h * self.addr_size].view(b, h, self.addr_size)
        ea = params[:, h * self.addr_size :].view(b, self.w, 2 * m)
        beta = F.softplus(addr[..., m])
        return {
            "key": addr[..., :m],
            "beta": self.beta_max * torch.tanh(beta / self.beta_max),  # ~softplus, bounded by beta_max
            "g": torch.sigmoid(addr[..., m + 1]),
            "gamma": 1.0 + F.softplus(addr[..., m + 2]),
            "s": torch.softmax(addr[..., m + 3 : m + 3 + s], dim=-1),
            "erase": torch.sigmoid(ea[..., :m]),
            "add": torch.tanh(ea[..., m:]),
        }

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step: ``x [B, in]`` -> features ``[B, out_dim]`` and the next state."""
        b = x.shape[0]
        ctrl_in = torch.cat([x, state["reads"].reshape(b, -1)], dim=-1)
        new: State = {}
        if self.controller_kind == "lstm":
            hs, cs, inp = [], [], ctrl_in
            for i, cell in enumerate(self.cells):
                h, c = cell(inp, (state["h"][:, i], state["c"][:, i]))
                hs.append(h)
                cs.append(c)
                inp = h
            new["h"], new["c"] = torch.stack(hs, 1), torch.stack(cs, 1)
            ctrl = inp
        else:
            ctrl = self.ff(ctrl_in)
        ctrl = ctrl.clamp(-self.clip, self.clip)
        p = self._head_params(self.heads(ctrl).clamp(-self.clip, self.clip))
        memory = state["memory"]
        # read and write heads address the memory as it was before this step's writes, all at once
        w_prev = torch.cat([state["read_w"], state["write_w"]], dim=1)
        w = address(memory, w_prev, p["key"], p["beta"], p["g"], p["s"], p["gamma"])
        read_w, write_w = w[:, : self.r], w[:, self.r :]
        reads = read(memory, read_w)
        new["memory"] = erase_add_write(memory, write_w, p["erase"], p["add"])
        new["read_w"], new["write_w"], new["reads"] = read_w, write_w, reads
        return torch.cat([ctrl, reads.reshape(b, -1)], dim=-1), new


class LSTMCore(Core):
    """A stacked LSTM (the NTM paper's baseline used 3 layers of 256 units); features = top layer."""

    def __init__(self, input_size: int, *, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise RlmError(f"lstm_size and lstm_layers must be >= 1, got {hidden} and {layers}")
        self.hidden, self.layers = hidden, layers
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers)
        self.out_dim = hidden

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Zero hidden and cell states ``[B, layers, hidden]``."""
        z = torch.zeros(batch, self.layers, self.hidden, device=device)
        return {"h": z, "c": z.clone()}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step: ``x [B, in]`` -> top-layer output ``[B, hidden]`` and the next state."""
        out, (h, c) = self.lstm(x.unsqueeze(0), _hc(state))
        return out[0], {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def forward_sequence(self, xs: torch.Tensor, state: State, resets: torch.Tensor | None = None,
                         record: bool = False) -> tuple[torch.Tensor, State, list[State]]:
        """As :meth:`Core.forward_sequence`; without resets or recording, one fused ``nn.LSTM`` call."""
        if resets is not None or record:
            return super().forward_sequence(xs, state, resets, record)
        out, (h, c) = self.lstm(xs, _hc(state))  # one fused call over the whole sequence
        return out, {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}, []


def _hc(state: State) -> tuple[torch.Tensor, torch.Tensor]:
    return state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous()


CORES = ("ntm", "lstm")


@dataclass
class CoreConfig:
    """Config keys of the memory core, shared by the agents that use one (``ntm``, ``a2c``)."""

    core: str = "ntm"
    """ntm | lstm"""
    controller: str = "lstm"
    """NTM controller: lstm | ff"""
    controller_size: int = 100
    controller_layers: int = 1
    memory_size: int = 128
    """N: memory slots"""
    memory_width: int = 20
    """M: width of a slot"""
    read_heads: int = 1
    write_heads: int = 1
    shift_range: int = 1
    """shifts -k..k of location addressing"""
    memory_init: float = 1e-6
    """constant initial memory value (Collier & Beel 2018)"""
    beta_max: float = 100.0
    """soft upper bound of the key strength beta"""
    controller_clip: float = 20.0
    """controller outputs and head parameters are clipped to +-this"""
    lstm_size: int = 256
    """units per layer of the LSTM core (core=lstm)"""
    lstm_layers: int = 3


def make_core(input_size: int, config: CoreConfig) -> Core:
    """Build the core named by ``config.core`` (``ntm`` | ``lstm``)."""
    c = config
    if c.core == "ntm":
        return NTM(
            input_size, controller=c.controller, controller_size=c.controller_size,
            controller_layers=c.controller_layers, memory_size=c.memory_size, memory_width=c.memory_width,
            read_heads=c.read_heads, write_heads=c.write_heads, shift_range=c.shift_range,
            memory_init=c.memory_init, beta_max=c.beta_max, clip=c.controller_clip,
        )
    if c.core == "lstm":
        return LSTMCore(input_size, hidden=c.lstm_size, layers=c.lstm_layers)
    raise RlmError(f"config key 'core' must be one of {', '.join(CORES)}, got '{c.core}'")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

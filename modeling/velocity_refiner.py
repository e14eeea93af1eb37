"""FlowTurbo's velocity refiner: a one-block DiT that predicts a velocity offset.

Implements the velocity refiner of Zhao et al., "FlowTurbo: Towards Real-time Flow-Based Image
Generation with Velocity Refiner" (NeurIPS 2024, arXiv:2409.18128), scaled down. In the last
sampling steps the large model is not called at all: `r(x, sigma, v_prev)` predicts how the
velocity changes from the previous step's, and the sampler uses `v_prev + r(...)`.

The design is the paper's (a single SiT/DiT block on `concat(x, v)`):
    patchify   a stride-p convolution over the 2C input channels, plus fixed 2-D sin-cos
               position embeddings computed for the actual token grid, so any latent size works
    condition  a sinusoidal embedding of sigma and an MLP
    block      one transformer block with adaLN-Zero modulation (attention + MLP)
    output     a final adaLN layer and a linear map, unpatchified to C channels; zero-initialised,
               so an untrained refiner returns offset 0 ("reuse v")

Deliberate difference: FlowTurbo's refiner is class-label conditioned; this one has no text or
label input. The guided velocity it receives already carries the prompt and the CFG scale.

Conventions (FLUX, reference/techniques.md section 0): sigma in [0, 1], noise at 1, velocity
`noise - x0`. Files are safetensors with the `RefinerConfig` as JSON in the metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from modeling.errors import ModelFileError
from modeling.files import load_state_dict, read_metadata

CONFIG_KEY = "config"  # safetensors metadata entry holding the RefinerConfig as JSON
FORMAT_KEY = "format"
FORMAT = "flowmill.velocity_refiner"
SIGMA_FREQUENCIES = 256  # sinusoidal features of sigma, as DiT's timestep embedder
SIGMA_SCALE = 1000.0  # sigma 0..1 embedded as the 0..1000 timestep FLUX and DiT use
_MAX_LISTED = 5


@dataclass(frozen=True)
class RefinerConfig:
    latent_channels: int = 16
    patch_size: int = 2  # the demo transformer's 2x2 packing: a 64 px image is 4x4 tokens
    hidden_size: int = 96
    heads: int = 4
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for name in ("latent_channels", "patch_size", "hidden_size", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RefinerConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.heads:
            raise ValueError(f"RefinerConfig: hidden_size {self.hidden_size} must divide into {self.heads} heads")
        if self.hidden_size % 4:
            raise ValueError(f"RefinerConfig: hidden_size {self.hidden_size} must be a multiple of 4 "
                             f"(2-D sin-cos position embeddings)")
        if not self.mlp_ratio > 0:
            raise ValueError(f"RefinerConfig.mlp_ratio must be positive, got {self.mlp_ratio!r}")


def sigma_embedding(sigma: torch.Tensor) -> torch.Tensor:
    """[B] sigmas -> [B, 256] cos/sin features of `sigma * 1000`: DiT's timestep features, via diffusers."""
    return get_timestep_embedding(sigma.float() * SIGMA_SCALE, SIGMA_FREQUENCIES, flip_sin_to_cos=True,
                                  downscale_freq_shift=0)


def position_embedding(rows: int, cols: int, dim: int) -> torch.Tensor:
    """[rows * cols, dim] fixed 2-D sin-cos embeddings: half the features for the row, half for the column."""
    quarter = dim // 4
    frequencies = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    row, col = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                              indexing="ij")
    parts = []
    for grid in (row.reshape(-1), col.reshape(-1)):
        angles = grid[:, None] * frequencies[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, hidden))


class Block(nn.Module):
    """A DiT block with adaLN-Zero: the conditioning vector sets shift, scale and gate of both halves."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        inner = int(hidden * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(condition).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_features)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(condition).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class VelocityRefinerNet(nn.Module):
    """`forward(x, sigma, velocity)` -> the velocity offset [B, C, H, W]; H and W multiples of the patch."""

    def __init__(self, config: RefinerConfig) -> None:
        super().__init__()
        self.config = config
        c, p, hidden = config.latent_channels, config.patch_size, config.hidden_size
        self.patch_embed = nn.Conv2d(2 * c, hidden, kernel_size=p, stride=p)
        self.sigma_mlp = nn.Sequential(nn.Linear(SIGMA_FREQUENCIES, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.block = Block(hidden, config.heads, config.mlp_ratio)
        self.final = FinalLayer(hidden, p * p * c)
        self._initialise()

    def _initialise(self) -> None:
        """DiT's initialisation: Xavier linears, small sigma MLP, and adaLN-Zero (modulations and output at 0)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.sigma_mlp[0], self.sigma_mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for layer in (self.block.modulation[-1], self.final.modulation[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        c, p = self.config.latent_channels, self.config.patch_size
        check_latent(x, velocity, sigma, self.config)
        batch, _, height, width = x.shape
        rows, cols = height // p, width // p
        tokens = self.patch_embed(torch.cat([x, velocity], dim=1)).flatten(2).transpose(1, 2)
        tokens = tokens + position_embedding(rows, cols, self.config.hidden_size).to(tokens)
        condition = self.sigma_mlp(sigma_embedding(sigma).to(tokens.dtype))
        out = self.final(self.block(tokens, condition), condition)  # [B, rows*cols, p*p*C], (dy, dx, c) per token
        out = out.view(batch, rows, cols, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(batch, c, height, width)


def check_latent(x: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, config: RefinerConfig,
                 name: str = "velocity refiner") -> None:
    """Shapes the refiner accepts, or a ValueError saying what was expected and what came."""
    c, p = config.latent_channels, config.patch_size
    if x.ndim != 4 or x.shape[1] != c:
        raise ValueError(f"{name}: expects {c}-channel latents [B, {c}, H, W], got shape {tuple(x.shape)}")
    if velocity.shape != x.shape:
        raise ValueError(f"{name}: the velocity must have the latent's shape {tuple(x.shape)}, "
                         f"got {tuple(velocity.shape)}")
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"{name}: sigma must have one value per batch item ({x.shape[0]}), "
                         f"got shape {tuple(sigma.shape)}")
    height, width = x.shape[-2:]
    if height % p or width % p:
        raise ValueError(f"{name}: latent height and width must be multiples of the patch size {p}, "
                         f"got {height}x{width} (H x W)")


@dataclass(frozen=True, eq=False)
class LoadedRefiner:
    """A refiner ready for sampling: `refiner(x, sigma, velocity)` -> offset, on x's device and dtype."""

    net: VelocityRefinerNet
    device: torch.device
    dtype: torch.dtype
    name: str

    @property
    def latent_channels(self) -> int:
        return self.net.config.latent_channels

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, velocity: torch.Tensor) -> torch.Tensor:
        """The velocity offset [B, C, H, W] for latents x at sigma [B] (or a scalar) with the previous velocity."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        if sigma.numel() == 1 and x.ndim == 4:
            sigma = sigma.expand(x.shape[0])
        check_latent(x, velocity, sigma, self.net.config, f"velocity refiner {self.name!r}")
        move = {"device": self.device, "dtype": self.dtype}
        with torch.no_grad():
            offset = self.net(x.to(**move), sigma.to(device=self.device), velocity.to(**move))
        return offset.to(device=x.device, dtype=x.dtype)


def parameter_count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def save_refiner(path: Path | str, net: VelocityRefinerNet, metadata: dict[str, str]) -> Path:
    """Write `net` as safetensors (float32), its config as JSON in the metadata beside `metadata`."""
    from safetensors.torch import save_file

    path = Path(path)
    reserved = {CONFIG_KEY, FORMAT_KEY} & set(metadata)
    if reserved:
        raise ValueError(f"metadata keys {sorted(reserved)} are written by save_refiner itself")
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise ValueError("safetensors metadata must map strings to strings")
    state = {key: value.detach().to(device="cpu", dtype=torch.float32).contiguous()
             for key, value in net.state_dict().items()}
    header = {**metadata, FORMAT_KEY: FORMAT, CONFIG_KEY: json.dumps(asdict(net.config), sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=header)
    return path


def load_refiner(path: Path | str, device: torch.device | str, *, dtype: torch.dtype = torch.float32,
                 name: str | None = None) -> LoadedRefiner:
    """A refiner file written by `save_refiner`; anything else is a ModelFileError naming the file."""
    path, device = Path(path), torch.device(device)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder; a velocity refiner is one .safetensors file")
    state = load_state_dict(path)  # refuses other formats and unreadable files
    config = _read_config(path)
    net = VelocityRefinerNet(config)
    _check_weights(path, config, net.state_dict(), state)
    net.load_state_dict(state)
    net = net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LoadedRefiner(net, device, dtype, name if name is not None else path.stem)


def _read_config(path: Path) -> RefinerConfig:
    metadata = read_metadata(path)
    expected = ", ".join(field.name for field in fields(RefinerConfig))
    if CONFIG_KEY not in metadata:
        found = ", ".join(sorted(metadata)) or "none"
        raise ModelFileError(f"{path}: not a velocity refiner: its metadata has no {CONFIG_KEY!r} entry "
                             f"(expected the RefinerConfig JSON written by save_refiner; metadata keys found: {found})")
    try:
        values = json.loads(metadata[CONFIG_KEY])
        return RefinerConfig(**values)
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: the refiner config {metadata[CONFIG_KEY]!r} does not fit "
                             f"(expected fields {expected}): {error}") from None


def _check_weights(path: Path, config: RefinerConfig, expected: dict[str, torch.Tensor],
                   found: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: the weights do not fit a velocity refiner with config {config}: "
            f"missing {_listing(missing)}; unexpected {_listing(unexpected)}"
        )
    for key, tensor in expected.items():
        if found[key].shape != tensor.shape:
            raise ModelFileError(f"{path}: weight {key!r} has shape {tuple(found[key].shape)}, the config "
                                 f"{config} expects {tuple(tensor.shape)}")


def _listing(keys: list[str]) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more

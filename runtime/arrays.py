"""The array namespace the runtime computes with: NumPy's, or PyTorch's on one device.

The training loop, the optimizers and the evaluation are written once, over a handful of
array operations (``empty``, ``multiply(..., out=)``, ``sqrt``, ``vdot``, ...) spelled as
NumPy spells them; ``namespace(module, device)`` gives the set a module's target computes
with: NumPy itself for the NumPy target, and for the torch target the same names over
``torch`` on ``device``, where the parameters, the optimizer's flat buffers and the data
live. Anything leaving the loop (a checkpoint, a prediction, an accuracy) is brought back
to NumPy by ``to_host``. Nothing here imports torch unless a torch module asks for it.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError

TORCH_HINT = "pip install 'backprop-compiler[torch]'"
TARGETS = ("numpy", "torch")
DEVICES = ("cpu", "cuda", "mps")


def target_of(module) -> str:
    """The target a generated module was compiled for: "torch" when its ``DTYPE`` is a
    torch dtype, else "numpy"."""
    return "torch" if type(getattr(module, "DTYPE", None)).__module__ == "torch" else "numpy"


def initial_params(module, rng: np.random.Generator, seed: int | None = None) -> dict:
    """The parameters a run starts from. Drawn from the run's NumPy generator ``rng``,
    the torch target's too when the module was compiled from a spec here: its NumPy
    twin's ``init_params`` draws them, so a run on torch is the NumPy run on another
    engine, and the shuffles that follow from ``rng`` are the same. A generated torch
    module without its spec draws its own from a CPU torch.Generator seeded ``seed``
    (drawn from ``rng`` when None)."""
    if target_of(module) == "numpy":
        return module.init_params(rng)
    comp = getattr(module, "_bpc_compilation", None)  # the spec's (loader, bpc.compile)
    if comp is not None:
        return comp.retargeted("numpy").module.init_params(rng)
    torch = import_torch()
    seed = int(rng.integers(2 ** 62)) if seed is None else seed
    return module.init_params(torch.Generator().manual_seed(seed))


def host_dtype(module) -> np.dtype:
    """The NumPy dtype of what ``module`` computes in (a torch module's ``DTYPE`` is a
    torch dtype: ``torch.float64`` is NumPy's float64)."""
    return _numpy_dtype(module.DTYPE)


def _numpy_dtype(dtype) -> np.dtype:
    """A NumPy dtype, or a torch dtype as NumPy's (``torch.float64``: float64)."""
    if type(dtype).__module__ == "torch":
        return np.dtype(str(dtype).removeprefix("torch."))
    return np.dtype(dtype)


def is_tensor(a) -> bool:
    """Whether ``a`` is a torch tensor (without importing torch)."""
    return type(a).__module__.startswith("torch")


def dtype_name(a) -> str:
    """The name of an array's dtype as NumPy names it ("float64"), a tensor's too."""
    return _numpy_dtype(a.dtype).name


def to_host(a) -> np.ndarray:
    """``a`` as a NumPy array on the host (a tensor copied off its device)."""
    if is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def host_dict(arrays: dict) -> dict[str, np.ndarray]:
    return {k: to_host(v) for k, v in arrays.items()}


def import_torch(why: str = "the torch target"):
    """``torch``, or a UserError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise UserError(f"{why} needs PyTorch, which is not installed",
                        f"install it with: {TORCH_HINT}") from None
    return torch


class NumpyArrays:
    """The operations the runtime needs, as NumPy has them (the NumPy target)."""

    name = "numpy"
    device = "cpu"
    multiply = staticmethod(np.multiply)
    divide = staticmethod(np.divide)
    sqrt = staticmethod(np.sqrt)
    vdot = staticmethod(np.vdot)
    isfinite = staticmethod(np.isfinite)
    max = staticmethod(np.maximum.reduce)
    min = staticmethod(np.minimum.reduce)
    empty_like = staticmethod(np.empty_like)
    zeros_like = staticmethod(np.zeros_like)
    copyto = staticmethod(np.copyto)

    @staticmethod
    def empty(n: int, dtype) -> np.ndarray:
        return np.empty(n, dtype)

    @staticmethod
    def array(a, dtype=None) -> np.ndarray:
        """A new array holding ``a`` (a copy), of ``dtype`` when given."""
        return np.array(a, dtype=dtype)

    @staticmethod
    def assign(dst: np.ndarray, src) -> None:
        """``src`` (NumPy or not) written into ``dst`` in place."""
        dst[...] = src

    @staticmethod
    def dtype_of(a):
        return np.result_type(a)

    # flat buffers (optimizers.flat_buffers): a view's buffer, address and extent
    @staticmethod
    def base(a):
        return a.base if isinstance(a, np.ndarray) else None

    @staticmethod
    def address(a) -> int:
        return a.__array_interface__["data"][0]

    @staticmethod
    def contiguous(a) -> bool:
        return a.flags.c_contiguous

    @staticmethod
    def nbytes(a) -> int:
        return a.nbytes

    @staticmethod
    def to_device(arrays: dict) -> dict:
        return arrays

    @staticmethod
    def mask_generator(seed: int):
        """None: the NumPy target draws dropout's masks from the run's own generator."""
        return None


class TorchArrays:
    """The same operations over torch tensors on ``device`` (the torch target)."""

    name = "torch"

    def __init__(self, device="cpu"):
        torch = import_torch()
        self.torch = torch
        self.device = torch.device(device)
        self.multiply, self.divide, self.sqrt = torch.mul, torch.div, torch.sqrt
        self.isfinite, self.max, self.min = torch.isfinite, torch.max, torch.min
        self.empty_like, self.zeros_like = torch.empty_like, torch.zeros_like

    def dtype(self, dtype):
        """The torch dtype of a NumPy dtype, a torch dtype, or a name."""
        if isinstance(dtype, self.torch.dtype):
            return dtype
        return getattr(self.torch, np.dtype(dtype).name)

    def empty(self, n: int, dtype):
        return self.torch.empty(n, dtype=self.dtype(dtype), device=self.device)

    def array(self, a, dtype=None):
        dtype = None if dtype is None else self.dtype(dtype)
        if is_tensor(a):
            return a.to(self.device, dtype).clone()
        return self.torch.tensor(np.asarray(a), dtype=dtype, device=self.device)

    def assign(self, dst, src) -> None:
        dst.copy_(src if is_tensor(src) else self.torch.from_numpy(np.asarray(src)))

    def copyto(self, dst, src) -> None:
        dst.copy_(src)

    def vdot(self, a, b):
        return self.torch.dot(a.reshape(-1), b.reshape(-1))

    def dtype_of(self, a):
        return a.dtype if is_tensor(a) else self.dtype(np.result_type(a))

    @staticmethod
    def base(a):
        return a._base if is_tensor(a) else None

    @staticmethod
    def address(a) -> int:
        return a.data_ptr()

    @staticmethod
    def contiguous(a) -> bool:
        return a.is_contiguous()

    @staticmethod
    def nbytes(a) -> int:
        return a.numel() * a.element_size()

    def to_device(self, arrays: dict) -> dict:
        """The arrays as tensors on the device, once (a tensor shares a CPU array's
        memory)."""
        return {k: self.torch.as_tensor(np.asarray(v) if not is_tensor(v) else v,
                                        device=self.device) for k, v in arrays.items()}

    def mask_generator(self, seed: int):
        """The generator dropout's masks are drawn from on the device, seeded by the run's
        seed; its state is part of every checkpoint (``generator_state``)."""
        return self.torch.Generator(device=self.device).manual_seed(seed)


NUMPY = NumpyArrays()


def namespace(module, device: str | None = None):
    """The namespace ``module``'s target computes with, on ``device`` (the torch
    target's default: "cpu"); a device given to a NumPy module is refused."""
    if target_of(module) == "numpy":
        if device not in (None, "cpu"):
            raise UserError(f"--device {device} needs the torch target",
                            "add --target torch (the NumPy target runs on the CPU)")
        return NUMPY
    return TorchArrays(checked_device(device or "cpu"))


def namespace_of(arrays: dict):
    """The namespace of arrays already made: torch's on their device when they are
    tensors, else NumPy's."""
    first = next(iter(arrays.values()), None)
    return TorchArrays(first.device) if is_tensor(first) else NUMPY


def checked_device(device: str) -> str:
    """``device`` when torch can compute on it here; else a UserError naming why."""
    torch = import_torch(f"--device {device}")
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise UserError(f"unknown device '{device}'", "devices: " + ", ".join(DEVICES))
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no CUDA GPU here",
                        "use --device cpu, or a machine with a GPU and a CUDA build of torch")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: PyTorch's Metal backend is not available here",
                        "use --device cpu")
    return device


def generator_state(generator) -> str:
    """A torch generator's state as text (hex), for a checkpoint's ``meta``."""
    return bytes(generator.get_state().numpy()).hex()


def set_generator_state(generator, text: str) -> None:
    """The state ``generator_state`` wrote, restored; ValueError when it is not one."""
    torch = import_torch()
    try:
        raw = bytes.fromhex(text)
        generator.set_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    except (TypeError, RuntimeError) as e:
        raise ValueError(str(e)) from None

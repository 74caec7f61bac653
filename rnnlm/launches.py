"""What a training batch would ask of a GPU, counted on the CPU: kernel launches, host syncs, uploads.

No GPU is needed to see whether the CuPy path is launch-bound. `CountingBackend` is the NumPy
backend with `device = True`: the model takes its device code path (the one CuPy runs: fused
kernels, the class softmax's batched GEMM, no host-side shortcuts), computes it with NumPy, and every
array operation is counted as the CuPy call it stands for. The rules (`LAUNCHES`, `_CountedArray`):

* one launch per ufunc call, reduction (`sum`, `max`, `any`, ... incl. their methods), GEMM (`dot`,
  `matmul`, `@`, `vdot`), gather (`a[int array]`), assignment into an array (`a[...] = b`, `fill`),
  copy (`copy`, `astype` to another dtype, a `reshape` that cannot be a view), `concatenate`, `stack`,
  `zeros`/`ones`/`full`/`arange`/`*_like` fills, a random draw, and a fused kernel of `rnnlm.backend`;
  `empty`, views (basic slicing, `.T`, a viewable `reshape`) and shapes are free;
* a few CuPy calls are several kernels: `argsort` 2 (radix sort + index init), `einsum` 2
  (product + reduction), `nonzero`/`flatnonzero` 2 and a sync (the count decides the output's size),
  a boolean-mask index 2 and a sync, `sum_by_index` 6 and a sync (`unique` sorts, flags, scans and
  needs its size on the host; then zeros + `scatter_add`), or 2 and two uploads given the indices
  on the host;
* a host synchronisation is every transfer of a device value to the host: `backend.to_host`,
  `float()`, `int()`, `bool()`, `.item()`, `.tolist()` of a device array, and the calls above;
* an upload is `backend.asarray` of a host array (an H2D copy, landing C-ordered: counted apart,
  it does not drain the queue);
* GEMM FLOPs: 2 m k n of every `dot`/`matmul`/`@` as called (the class softmax's padding included).

Only calls made at the top level count: the NumPy internals of a counted call (a Python-level NumPy
function calling others) are that one call. The counts are what matters for a launch-bound GPU:
`estimate_device_throughput` turns them into tokens per second with the model of docs/engine.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnlm.backend import Backend

# CuPy calls that are more than one kernel (see the module docstring); every other counted call is 1.
LAUNCHES = {"argsort": 2, "einsum": 2, "nonzero": 2, "flatnonzero": 2, "argwhere": 2, "unique": 4}
# CuPy calls that need a value on the host before they can return.
SYNCING = {"nonzero", "flatnonzero", "argwhere", "unique"}
# Module-level calls that take no array argument (so no __array_function__ dispatch) and make a
# device array: their launches (a fill kernel, 0 for uninitialised memory).
_CREATION = {"empty": 0, "zeros": 1, "ones": 1, "full": 1, "arange": 1, "eye": 1, "linspace": 1}


@dataclass
class Counts:
    launches: int = 0
    syncs: int = 0
    uploads: int = 0
    by_call: dict[str, int] = field(default_factory=dict)
    gemm_flops: int = 0  # 2 m k n of every GEMM as called (the class softmax's padding included)

    def __sub__(self, other: "Counts") -> "Counts":
        calls = {name: n - other.by_call.get(name, 0) for name, n in self.by_call.items()}
        return Counts(self.launches - other.launches, self.syncs - other.syncs, self.uploads - other.uploads,
                      {name: n for name, n in calls.items() if n}, self.gemm_flops - other.gemm_flops)

    def copy(self) -> "Counts":
        return Counts(self.launches, self.syncs, self.uploads, dict(self.by_call), self.gemm_flops)


class _Counter:
    def __init__(self):
        self.counts = Counts()
        self.depth = 0  # > 0 inside a counted call: its internals are part of it

    def launch(self, name: str, n: int = 1) -> None:
        if self.depth == 0 and n:
            self.counts.launches += n
            self.counts.by_call[name] = self.counts.by_call.get(name, 0) + n

    def sync(self, name: str) -> None:
        if self.depth == 0:
            self.counts.syncs += 1
            key = f"sync:{name}"
            self.counts.by_call[key] = self.counts.by_call.get(key, 0) + 1

    def gemm(self, left, result) -> None:
        left, result = _plain(left), _plain(result)
        if self.depth == 0:
            self.counts.gemm_flops += 2 * int(np.size(result)) * int(np.shape(left)[-1] if np.ndim(left) else 1)

    @contextlib.contextmanager
    def inside(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1


_COUNTER: _Counter | None = None  # the active backend's counter (one counting backend at a time)


def _plain(value):
    """_CountedArray -> ndarray view (recursively through tuples and lists); others unchanged."""
    if isinstance(value, _CountedArray):
        return value.view(np.ndarray)
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _counted(value):
    """ndarray results (and NumPy scalars: CuPy returns 0-d device arrays) as _CountedArray."""
    if isinstance(value, _CountedArray):
        return value
    if isinstance(value, np.ndarray):
        if value.base is None:
            # A fresh array: the counted one owns its memory, so that views of it have it as their
            # `.base` (the output layers recognise their own buffers by that, as on a real device).
            owner = np.ndarray.__new__(_CountedArray, value.shape, value.dtype)
            np.copyto(owner.view(np.ndarray), value)
            return owner
        return value.view(_CountedArray)
    if isinstance(value, np.generic):
        return np.asarray(value).view(_CountedArray)
    if isinstance(value, tuple):
        return tuple(_counted(item) for item in value)
    if isinstance(value, list):
        return [_counted(item) for item in value]
    return value


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(item, (slice, int, np.integer, type(None), type(Ellipsis))) for item in items)


def _has_boolean_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(getattr(item, "dtype", None) == np.bool_ for item in items)


class _CountedArray(np.ndarray):
    """A NumPy array standing for a CuPy device array: operations on it count as launches/syncs."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        counter = _COUNTER
        if counter is not None:
            counter.launch(f"{ufunc.__name__}" + ("" if method == "__call__" else f".{method}"))
        if out is not None:
            kwargs["out"] = tuple(_plain(item) for item in out)
        with counter.inside() if counter is not None else contextlib.nullcontext():
            result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        if counter is not None and ufunc is np.matmul and method == "__call__":
            counter.gemm(inputs[0], result)
        if out is not None:
            if isinstance(result, tuple):
                return tuple(o for o in out)
            return out[0]
        return _counted(result)

    def __array_function__(self, func, types, args, kwargs):
        counter = _COUNTER
        name = func.__name__
        if counter is not None:
            counter.launch(name, 0 if name == "empty_like" else LAUNCHES.get(name, 1))
            if name in SYNCING:
                counter.sync(name)
        out = kwargs.get("out")
        if out is not None:
            kwargs = {**kwargs, "out": _plain(out)}
        with counter.inside() if counter is not None else contextlib.nullcontext():
            result = func(*_plain(args), **_plain(kwargs))
        if counter is not None and name in ("dot", "vdot", "matmul"):
            counter.gemm(args[0] if name != "vdot" else np.ravel(_plain(args[0])), result if name != "vdot" else 1)
        if out is not None:
            return out
        return _counted(result)

    # -------------------------------------------------------------- indexing
    def __getitem__(self, index):
        counter = _COUNTER
        plain_index = _plain(index)
        if counter is not None and not _is_basic_index(plain_index):
            if _has_boolean_index(plain_index):
                counter.launch("boolean_index", 2)
                counter.sync("boolean_index")
            else:
                counter.launch("take")
        return _counted(np.ndarray.__getitem__(self, plain_index))  # a view's base is this array

    def __setitem__(self, index, value):
        counter = _COUNTER
        if counter is not None:
            if isinstance(value, np.ndarray) and not isinstance(value, _CountedArray) and value.size > 1:
                counter.counts.uploads += counter.depth == 0
            counter.launch("setitem" if _is_basic_index(_plain(index)) else "scatter")
        np.ndarray.__setitem__(self.view(np.ndarray), _plain(index), _plain(value))

    # -------------------------------------------------------------- methods that are not ufuncs
    def _method(self, name: str, launches: int = 1):
        counter = _COUNTER
        if counter is not None:
            counter.launch(name, launches)
        return counter.inside() if counter is not None else contextlib.nullcontext()

    def copy(self, order="C"):
        with self._method("copy"):
            return _counted(np.ndarray.copy(self.view(np.ndarray), order))

    def astype(self, dtype, *args, copy=True, **kwargs):
        plain = self.view(np.ndarray)
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        with self._method("astype"):
            return _counted(plain.astype(dtype, *args, copy=copy, **kwargs))

    def fill(self, value):
        with self._method("fill"):
            np.ndarray.fill(self.view(np.ndarray), value)

    def argmax(self, *args, **kwargs):
        with self._method("argmax"):
            return _counted(self.view(np.ndarray).argmax(*args, **kwargs))

    def argsort(self, *args, **kwargs):
        with self._method("argsort", LAUNCHES["argsort"]):
            return _counted(self.view(np.ndarray).argsort(*args, **kwargs))

    def dot(self, other, out=None):
        return np.dot(self, other, out=out)

    def nonzero(self):
        return np.nonzero(self)

    def reshape(self, *shape, **kwargs):
        plain = self.view(np.ndarray)
        result = plain.reshape(*shape, **kwargs)
        if not np.shares_memory(result, plain):
            self._method("reshape_copy")
        return _counted(result)

    def ravel(self, order="C"):
        plain = self.view(np.ndarray)
        result = plain.ravel(order)
        if result.size and not np.shares_memory(result, plain):
            self._method("ravel_copy")
        return _counted(result)

    # -------------------------------------------------------------- transfers to the host
    def _sync(self, name: str):
        if _COUNTER is not None:
            _COUNTER.sync(name)
        return self.view(np.ndarray)

    def __float__(self):
        return float(self._sync("float"))

    def __int__(self):
        return int(self._sync("int"))

    def __index__(self):
        return self._sync("index").__index__()

    def __bool__(self):
        return bool(self._sync("bool"))

    def item(self, *args):
        return self._sync("item").item(*args)

    def tolist(self):
        return self._sync("tolist").tolist()

    def __iter__(self):
        if _COUNTER is not None:
            _COUNTER.sync("iter")
        return iter(_counted(list(self.view(np.ndarray))))


class _CountingRandom:
    def __init__(self, generator: np.random.Generator):
        self._generator = generator

    def __getattr__(self, name: str):
        method = getattr(self._generator, name)

        def draw(*args, **kwargs):
            if _COUNTER is not None:
                _COUNTER.launch(f"random.{name}")
            return _counted(method(*args, **kwargs))

        return draw


class _CountingRandomModule:
    def default_rng(self, seed=None):
        return _CountingRandom(np.random.default_rng(seed))


class _CountingNumpy:
    """The numpy module as `backend.xp`: creation calls make counted arrays (and count their fill);
    everything else is numpy's own, counted through the arrays' __array_ufunc__/__array_function__."""

    random = _CountingRandomModule()

    def run_kernel(self, kernel, *arrays) -> None:
        if _COUNTER is not None:
            _COUNTER.launch(f"fused.{kernel.name}")
        with _COUNTER.inside() if _COUNTER is not None else contextlib.nullcontext():
            kernel.numpy_twin(np, *_plain(arrays))

    def __getattr__(self, name: str):
        attribute = getattr(np, name)
        if name in _CREATION:

            def create(*args, **kwargs):
                if _COUNTER is not None:
                    _COUNTER.launch(name, _CREATION[name])
                return _counted(attribute(*args, **kwargs))

            return create
        if name in ("asarray", "array", "ascontiguousarray"):

            def convert(value, *args, **kwargs):
                if isinstance(value, _CountedArray):
                    return _counted(attribute(_plain(value), *args, **kwargs))
                if _COUNTER is not None:
                    _COUNTER.counts.uploads += _COUNTER.depth == 0
                # an upload lands C-ordered on the device
                return _counted(np.ascontiguousarray(attribute(value, *args, **kwargs)))

            return convert
        return attribute


class CountingBackend(Backend):
    """The NumPy backend taking the device code path, counting what CuPy would be asked to do.

    Results are NumPy's, so they equal the CPU backend's wherever the device path computes the same
    expressions (tested). One counting backend is active at a time (the last one made)."""

    def __init__(self):
        super().__init__(_CountingNumpy(), "numpy-counting")
        self.device = True
        global _COUNTER
        self._counter = _Counter()
        _COUNTER = self._counter

    @property
    def counts(self) -> Counts:
        return self._counter.counts.copy()

    def reset(self) -> None:
        self._counter.counts = Counts()

    def asarray(self, array: Any, dtype: Any = None):
        return self.xp.asarray(array, dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        if isinstance(array, _CountedArray):
            self._counter.sync("to_host")
            return np.array(array.view(np.ndarray))
        return np.asarray(array)

    def sum_by_index(self, indices, values, host_indices=None):
        counter = self._counter
        if host_indices is None:
            counter.launch("sum_by_index", 6)
            counter.sync("sum_by_index")
        else:  # unique on the host: its two arrays uploaded, then zeros + scatter_add
            counter.launch("sum_by_index", 2)
            counter.counts.uploads += 2
        with counter.inside():
            unique, sums = super().sum_by_index(_plain(indices), _plain(values))
        return _counted(unique), _counted(sums)



# ---------------------------------------------------------------------- the device-throughput model
@dataclass(frozen=True)
class DeviceModel:
    """docs/engine.md's cost model of a launch-bound GPU step (see "GPU: ... expected throughput").

    host   = launches * launch_s                        (CuPy's Python + driver time per call)
    device = launches * kernel_s + flops / (efficiency * peak_flops)
    seconds per batch = max(host, device) + syncs * sync_s
    A sync drains the queue and costs a round trip; with none the host queues ahead of the device,
    so the slower of the two sides sets the pace."""

    name: str = "H100 SXM, FP32"
    launch_s: float = 7.5e-6  # docs/engine.md: ~450 calls in ~3.5 ms
    kernel_s: float = 2.5e-6  # smallest kernel's time on the device
    sync_s: float = 20e-6  # a device->host round trip after the queue has drained
    peak_flops: float = 67e12  # H100 SXM FP32 (non-tensor), data sheet
    efficiency: float = 0.5

    def seconds(self, launches: float, syncs: float, flops: float) -> float:
        host = launches * self.launch_s
        device = launches * self.kernel_s + flops / (self.efficiency * self.peak_flops)
        return max(host, device) + syncs * self.sync_s


H100 = DeviceModel()


def flops_per_token(model, word_counts=None) -> float:
    """One training step per token (forward, backward, update), docs/engine.md's count: output
    6 (K + E|class|) H for the class softmax (6 C H full; E|class| under `word_counts`, uniform
    without), recurrence 6 G H^2."""
    config, cell = model.config, model.cell
    hidden = config.hidden_size
    if config.output == "class":
        output = model.output
        sizes = np.diff(output.class_start)
        weights = np.ones(config.vocab_size) if word_counts is None else np.asarray(word_counts, dtype=np.float64)
        expected_class = float((weights * sizes[output.class_of_word]).sum() / weights.sum())
        output_flops = 6 * (output.num_classes + expected_class) * hidden
    else:
        output_flops = 6 * config.vocab_size * hidden
    return output_flops + 6 * cell.gates * hidden * hidden


def _calls_per_batch(counts: Counts, batches: int) -> dict[str, float]:
    return {name: n / batches for name, n in sorted(counts.by_call.items(), key=lambda item: -item[1])}


def count_training_batches(hyperparameters: dict, vocab_size: int, batch_size: int, length: int,
                           batches: int = 2, seed: int = 0, device_model: DeviceModel = H100) -> dict[str, Any]:
    """Counts per training batch of one `models:` entry at `batch_size`, sentences of `length`
    tokens drawn like `rnnlm bench`'s, the trainer's own step (SGD or Adam, clipping, dropout);
    after one warm-up batch (buffers that are kept between steps are made once)."""
    from rnnlm.bench import zipf_counts, zipf_sentences
    from rnnlm.model import RNNLM
    from rnnlm.optim import Adam
    from rnnlm.train_config import split_hyperparameters
    from rnnlm.update import adam_step, sgd_step

    backend = CountingBackend()
    model_config, train_config = split_hyperparameters({**hyperparameters, "batch_size": batch_size},
                                                       vocab_size, "float32")
    word_counts = zipf_counts(vocab_size)
    model = RNNLM(model_config, backend, seed=0, word_counts=word_counts)
    optimizer = Adam(model.params, backend.xp) if train_config.optimizer == "adam" else None
    dropout_rng = backend.rng(0) if model_config.uses_dropout else None
    rate = train_config.learning_rate / 10
    sentences = zipf_sentences(np.random.default_rng(seed), vocab_size, batch_size * (batches + 1), length)
    host_batches = []
    for i in range(batches + 1):
        block = sentences[i * batch_size : (i + 1) * batch_size].T
        host_batches.append((block[:-1], block[1:], np.ones(block[1:].shape, np.float32)))

    def step(x, y, mask) -> int:
        if optimizer is None:
            return sgd_step(model, x, y, mask, rate, train_config.clip_norm, dropout_rng=dropout_rng,
                            weight_decay=train_config.weight_decay)[1]
        return adam_step(model, optimizer, x, y, mask, rate, train_config.clip_norm, dropout_rng=dropout_rng,
                         weight_decay=train_config.weight_decay)[1]

    step(*host_batches[0])
    start = backend.counts
    tokens = sum(step(*batch) for batch in host_batches[1:])
    counts = backend.counts - start
    per_batch = tokens / batches
    launches, syncs = counts.launches / batches, counts.syncs / batches
    # the GEMMs as called (padding included) or the formula's count, whichever is more
    formula = flops_per_token(model, word_counts)
    flops = max(formula * per_batch, counts.gemm_flops / batches)
    seconds = device_model.seconds(launches, syncs, flops)
    return {
        "batch_size": batch_size,
        "tokens_per_batch": per_batch,
        "launches_per_batch": launches,
        "tokens_per_launch": round(per_batch / launches, 2),
        "syncs_per_batch": syncs,
        "uploads_per_batch": counts.uploads / batches,
        "flops_per_token": round(formula),
        "gemm_flops_per_token": round(counts.gemm_flops / tokens),
        "estimated_tokens_per_s": round(per_batch / seconds),
        "device_model": device_model.name,
        "calls": _calls_per_batch(counts, batches),
    }


def launch_report(models: dict[str, dict], vocab_size: int, batch_sizes: dict[str, list[int]],
                  length: int) -> dict[str, Any]:
    """{model name: [count_training_batches at each of batch_sizes[name]]}, the device model's
    constants and the settings."""
    report = {name: [count_training_batches({**hyper, "epochs": 1}, vocab_size, size, length)
                     for size in batch_sizes[name]] for name, hyper in models.items()}
    return {"device_model": dataclasses.asdict(H100), "models": report,
            "settings": {"vocab_size": vocab_size, "sentence_length": length}}


"""Data-parallel training on every core, with NumPy and the standard library alone.

One process per core, called a worker. The process that calls ``Trainer.fit`` is worker 0; it
forks the others when training starts and stops them when it ends. Every step:

    the batch of B images is cut into W consecutive shares, one per worker
    every worker: forward, loss and backward of its share; BatchNorm layers normalise with the
                  statistics of the whole batch (each worker's partial sums are exchanged)
                  its gradient, times share/B, goes into its own row of G (W rows × P numbers)
    ── all meet ──
    every worker: adds up the W rows of G over its own range of the P columns, which gives
                  Σ_w (share_w/B)·∇L_w = the gradient of the whole batch's mean loss there
                  (into ``total``), and runs the optimizer on that range of the parameters
    ── all meet (the start of the next step) ──

The parameters, G and the optimizer's state live in shared memory: anonymous memory mapped
before the fork, so every worker reads and writes the same numbers, it has no name to clean
up, and it goes away with the processes. Each process runs BLAS on one thread: W processes
with several BLAS threads each would only fight over the cores.

An MLP shares out each layer's units instead of each batch (``split.SplitUnits``, a subclass
that keeps all of the above but the step: no gradient is added up there).

Results depend on the number of workers (sums are added in another order, and each share
draws its own random numbers for augmentation and dropout), and on nothing else: the same seed
and the same number of workers give the same weights bit for bit, and so does a run resumed
from a checkpoint.

When something goes wrong: a worker that dies or fails stops training with ``WorkerError``
(whoever waits for the others checks every WAIT_POLL seconds that they are alive; a step is
never finished without every share); Ctrl-C reaches only worker 0, which finishes the step,
writes its checkpoint and stops the others; and the workers are stopped however training ends.

Forking copies the parent's memory (the data set, the model) for free, but only the thread that
forks: a lock held by another thread stays locked forever in the child. So where the platform
cannot fork, or this process runs other threads (a web server does), ``fork_problem`` says why
and training runs on one worker. A server that wants every core trains in a process of its
own, started fresh (``fresh_process``), which then forks its workers safely.
"""
from __future__ import annotations

import copy
import ctypes
import functools
import math
import mmap
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np

from .errors import SifirError
from .messages import t
from .nn import init as nn_init
from .nn.module import Module
from .nn.norm import _BatchNorm
from .optim import piece as optim_piece

WAIT_POLL = 0.5      # seconds between checks, while waiting, that the other processes are alive
SPIN = 0.0005        # seconds a meeting's waiter keeps trying before it sleeps
STOP_GRACE = 5.0     # seconds the workers get to exit after being told to, before they are killed
ALIGN = 16           # update ranges start at multiples of 16 numbers (64 bytes: a cache line)
SPLIT_WEIGHTS = 50_000   # an MLP with at least this many parameters trains on every core (split units)

_TRAIN, _EVAL, _WAIT, _STOP = 1, 2, 3, 4   # commands from worker 0 to the others


class WorkerError(SifirError):
    """A training worker died, failed, or cannot be started; training has stopped."""


class OneWorker(RuntimeWarning):
    """Training asked for several workers runs on one (the message says why)."""


# -- what this machine and process allow ------------------------------------------------------
def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; a container's limit shows there)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def default_workers(model: Module, cores: int | None = None) -> int:
    """How many workers (training) serve ``model`` best on ``cores`` (default: every usable
    core). A network with convolutions does most of its work outside BLAS, so it gets every
    core, each worker taking a share of every batch. An MLP big enough to gain trains on every
    core too, each worker taking a share of every layer's units (``split.SplitUnits``, from
    SPLIT_WEIGHTS weights on: docs/performance.md, "Which networks get workers"); a smaller one
    runs in one process whose BLAS uses every core."""
    # split builds on this module: imported here, only to classify
    from .split import linear_layers
    cores = usable_cores() if cores is None else cores
    if _convolutional(model):
        return cores
    if linear_layers(model) is not None and model.num_parameters() >= SPLIT_WEIGHTS:
        return cores
    return 1


def inference_threads(model: Module, cores: int | None = None) -> int:
    """Threads that share the batches of an inference (``train.predict_logits``): every core for
    a network with convolutions; one thread whose BLAS uses every core for an MLP, whose work is
    all matrix products (one thread per core was slower: docs/performance.md)."""
    cores = usable_cores() if cores is None else cores
    return cores if _convolutional(model) else 1


def _convolutional(model: Module) -> bool:
    # layers import nothing of this module: imported here, only to classify
    from .nn.conv import Conv2d
    return any(isinstance(m, Conv2d) for m in model.modules())


def sum_rows(rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Σ of ``rows`` (one per worker) in a fixed order, so that every worker and every run adds
    them alike (deterministic); into ``out`` when given."""
    if out is None:
        out = np.empty_like(rows[0])
    if len(rows) == 1:
        out[...] = rows[0]
        return out
    np.add(rows[0], rows[1], out=out)
    for row in rows[2:]:
        out += row
    return out


def fork_problem() -> str | None:
    """Why this process cannot fork workers safely, or None when it can."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return t("parallel.no_fork")
    others = [th.name for th in threading.enumerate() if th is not threading.current_thread()]
    if others:
        return t("parallel.threads", names=", ".join(others))
    return None


def fresh_process(target, *args, **kwargs):
    """Start ``target(*args, **kwargs)`` in a new Python process that is spawned, not forked: it
    holds none of the caller's threads, so training there can fork its workers. For a server (or
    any program with threads) that trains on every core; ``target`` and its arguments must be
    importable and picklable. Returns the started ``multiprocessing.Process``."""
    process = multiprocessing.get_context("spawn").Process(target=target, args=args, kwargs=kwargs)
    process.start()
    return process


# -- inference on every core: threads ---------------------------------------------------------
def replica(module):
    """A copy of ``module`` for another thread: layer objects of its own (layers keep what
    forward computed), sharing the parameters, buffers and every other value with the original."""
    clone = copy.copy(module)
    for name, value in vars(module).items():
        if isinstance(value, Module):
            setattr(clone, name, replica(value))
        elif isinstance(value, list) and any(isinstance(v, Module) for v in value):   # Sequential's layers
            setattr(clone, name, [replica(v) if isinstance(v, Module) else v for v in value])
    return clone


def map_batches(model, x, batch_size: int, workers: int) -> list:
    """[model(batch) for every batch of x], the batches shared by ``workers`` threads, each with
    a replica of the model; BLAS on one thread meanwhile (the threads are the parallelism).
    NumPy lets go of the interpreter lock in matrix products, copies and element-wise loops,
    so the threads really run side by side. Each thread takes batches of batch_size/workers,
    so that all of them together hold no more than one batch of batch_size would."""
    batch_size = max(1, batch_size // workers)
    starts = list(range(0, len(x), batch_size))
    workers = max(1, min(workers, len(starts)))
    models = [model] + [replica(model) for _ in range(workers - 1)]
    out = [None] * len(starts)

    def run(k):   # thread k: batches k, k + workers, k + 2·workers, …
        for i in range(k, len(starts), workers):
            out[i] = models[k](x[starts[i]:starts[i] + batch_size])

    with blas_threads(1), ThreadPoolExecutor(max_workers=max(1, workers - 1)) as pool:
        futures = [pool.submit(run, k) for k in range(1, workers)]
        run(0)
        for future in futures:
            future.result()
    return out


# -- BLAS threads -----------------------------------------------------------------------------
def _openblas():
    """NumPy's OpenBLAS, through ctypes: (get_num_threads, set_num_threads) or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("", ""), ("scipy_", "64_"), ("", "64_")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                put.argtypes = [ctypes.c_int]
                return get, put
    return None


@functools.cache
def _blas_limit():
    """How this process limits its BLAS, found once: ``limit(n)``, a context manager, or None.
    Finding the libraries is the slow part (threadpoolctl walks every loaded library: about
    1 ms a call, as long as a batch of 1000 images through the seed network), so it happens
    once: the BLAS that NumPy runs on is loaded with NumPy, before anything here asks."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        ThreadpoolController = None
    if ThreadpoolController is not None:
        controller = ThreadpoolController()
        return lambda n: controller.limit(limits=n, user_api="blas")
    lib = _openblas()
    if lib is None:
        return None
    get, put = lib

    @contextmanager
    def limit(n):
        before = get()
        put(n)
        try:
            yield
        finally:
            put(before)
    return limit


def blas_threads(n: int):
    """A context manager: BLAS limited to ``n`` threads inside the block (threadpoolctl when it
    is installed: it knows every BLAS; else NumPy's OpenBLAS directly; else unchanged)."""
    limit = _blas_limit()
    return nullcontext() if limit is None else limit(n)


# -- shared memory and meeting points ---------------------------------------------------------
def shared_zeros(shape, dtype) -> np.ndarray:
    """Zeros in memory that processes forked afterwards share (anonymous, MAP_SHARED)."""
    dtype, count = np.dtype(dtype), int(np.prod(shape))
    buffer = mmap.mmap(-1, max(1, count * dtype.itemsize))
    return np.frombuffer(buffer, dtype, count=count).reshape(shape)


class _Meeting:
    """A barrier for W processes: the others check in with worker 0, which lets them all go.
    One semaphore per waiting worker, so a fast worker can never take a slow one's turn."""

    def __init__(self, ctx, workers: int):
        self.arrived = ctx.Semaphore(0)
        self.go = [ctx.Semaphore(0) for _ in range(workers - 1)]
        # spin only where every worker has a core of its own: else the spinner takes the core
        # of the very worker it waits for
        self.spin = SPIN if workers <= usable_cores() else 0.0

    def lead(self, check) -> None:        # worker 0
        for _ in self.go:
            _acquire(self.arrived, check, self.spin)
        for s in self.go:
            s.release()

    def join(self, rank: int, check) -> None:   # workers 1 … W−1
        self.arrived.release()
        _acquire(self.go[rank - 1], check, self.spin)


def _acquire(semaphore, check, spin: float = 0.0) -> None:
    """Take ``semaphore``, calling ``check`` every WAIT_POLL seconds while it waits. For the first
    ``spin`` seconds it only tries, without sleeping: a process that sleeps takes tens of
    microseconds to wake (more on a virtual machine), as long as a meeting's whole wait."""
    if spin:
        deadline = time.perf_counter() + spin
        while time.perf_counter() < deadline:
            if semaphore.acquire(False):
                return
    while not semaphore.acquire(timeout=WAIT_POLL):
        check()


def shares(n: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of each worker's share of n items: consecutive, sizes differing by at most 1."""
    bounds = [n * w // workers for w in range(workers + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# -- the runner -------------------------------------------------------------------------------
class DataParallel:
    """W processes training one model on shares of each batch.

    ``start()`` forks the workers; then per batch ``forward_backward(idx, rng)`` (returns the
    batch's mean loss and number of correct predictions) and ``step()``; ``wait()`` before
    reading the parameters or the optimizer's state (checkpoints); ``predict(x)`` for an array
    named at construction; ``close()`` at the end, ``close(abort=True)`` on an error. The model's
    parameters and the optimizer's state are views of shared memory while it runs, and private
    arrays again after ``close``.
    """

    def __init__(self, model, optimizer, loss_fn, workers: int, train_x, train_y, *, augment=None,
                 batch_size: int, eval_x=None):
        if workers < 2:
            raise ValueError("DataParallel needs at least 2 workers")
        self.model, self.optimizer, self.loss_fn, self.augment = model, optimizer, loss_fn, augment
        self.workers, self.batch_size = workers, batch_size
        self.x, self.y, self.eval_x = train_x, train_y, eval_x
        self.rank = 0
        self.processes: list = []
        self._started = False

    # -- setting up ---------------------------------------------------------------------------
    def start(self) -> "DataParallel":
        params = self.optimizer.params
        if [id(p) for p in params] != [id(p) for p in self.model.parameters()]:
            raise WorkerError(t("parallel.optimizer_params"))
        dtypes = {p.data.dtype for p in params}
        if len(dtypes) != 1:
            raise WorkerError(t("parallel.mixed_dtypes", dtypes=", ".join(sorted(map(str, dtypes)))))
        dtype = dtypes.pop()
        classes = self._output_width() if self.eval_x is not None else 0
        w = self.workers
        sizes = [p.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        total = self.offsets[-1]
        # parameters: one flat shared array, each Parameter's data a view of its part
        self.flat = shared_zeros(total, dtype)
        for p, a, b in zip(params, self.offsets, self.offsets[1:]):
            view = self.flat[a:b].reshape(p.shape)
            view[...] = p.data
            p.data = view
        self._allocate_exchange(dtype, total)
        self._share_optimizer_state(dtype, total)
        # Commands, in two slots used in turn: a command is written while the workers still read
        # the one before. Workers copy a command as soon as they meet; one slot's next command is
        # written two meetings later at the earliest, when every worker has read it.
        self.control = shared_zeros((2, 6), np.float64)      # command, n, seed, lr, steps, alone
        self.indices = shared_zeros((2, self.batch_size), np.int64)
        self.results = shared_zeros((w, 3), np.float64)      # loss sum, correct, images
        self.errors = shared_zeros((w, 400), np.uint8)       # a failed worker's message, UTF-8
        norms = [m for m in self.model.modules() if isinstance(m, _BatchNorm)]
        width = max([2 * m.num_features + 1 for m in norms], default=1)
        self.exchange = shared_zeros((2, w, width), np.float64)
        self._exchanges = 0
        if self.eval_x is not None:
            self.logits = shared_zeros((len(self.eval_x), classes), dtype)
        # update ranges: W consecutive ranges of the P numbers, cut at multiples of ALIGN
        cuts = [min(total, round(total * r / w / ALIGN) * ALIGN) for r in range(w)] + [total]
        self.ranges = list(zip(cuts[:-1], cuts[1:]))
        self._sliced = None
        for m in norms:
            m.across = self._sum_over_workers
        self._norms = norms
        self._rng_before = nn_init.get_rng()
        self._blas = blas_threads(1)
        self._blas.__enter__()
        self._generation = 0
        self._started = True
        self._parent = os.getpid()
        ctx = multiprocessing.get_context("fork")
        self.meeting = _Meeting(ctx, w)
        try:
            for rank in range(1, w):
                process = ctx.Process(target=self._worker_main, args=(rank,), name=f"sifir-worker-{rank}")
                process.start()
                self.processes.append(process)
        except OSError as e:   # no memory or no processes left for another worker
            self.close(abort=True)
            raise WorkerError(t("parallel.no_start", workers=w, error=e.strerror or e)) from None
        except BaseException:
            self.close(abort=True)
            raise
        return self

    def _allocate_exchange(self, dtype, total) -> None:
        """The shared memory through which the workers combine their work: here G (one row of
        gradients per worker) and its sum."""
        self.grads = shared_zeros((self.workers, total), dtype)   # G: row r is worker r's gradient
        self.total = shared_zeros(total, dtype)                    # Σ of G's rows: the batch's gradient

    def _share_optimizer_state(self, dtype, total) -> None:
        """Every buffer of the optimizer's state (Adam's sums, SGD's momentum) in shared memory.
        A buffer that does not exist yet (SGD's momentum before its first step) gets its place,
        and a flag that says when a worker has filled it."""
        self.state = {}
        for name, buffers in self.optimizer._buffers().items():
            flat = shared_zeros(total, dtype)
            present = shared_zeros(len(buffers), np.uint8)
            for i, (a, b) in enumerate(zip(self.offsets, self.offsets[1:])):
                if buffers[i] is not None:
                    view = flat[a:b].reshape(self.optimizer.params[i].shape)
                    view[...] = buffers[i]
                    buffers[i] = view
                    present[i] = 1
            self.state[name] = (flat, present)

    def _output_width(self) -> int:
        was_training = self.model.training
        self.model.eval()
        try:
            return int(np.prod(self.model(self.eval_x[:1]).shape[1:]))
        finally:
            self.model.train(was_training)

    # -- worker 0's side of a step ------------------------------------------------------------
    def forward_backward(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[float, int]:
        """Forward and backward of the batch ``idx`` on every worker; returns (mean loss, correct).
        ``rng`` (the trainer's) gives each step a seed, from which every share draws its own
        random numbers. The update waits for ``step``."""
        n = len(idx)
        seed = int(rng.integers(1 << 52))   # below 2⁵³: exact in the float64 command row
        alone = n < self.workers   # fewer images than workers: worker 0 takes the whole batch
        k = self._command(_TRAIN, n, seed, self.optimizer.lr, self.optimizer.step_count, alone)
        self.indices[k, :n] = idx
        self._meet()
        self._step_command = (k, *self.control[k])
        self._train_share(self._step_command)
        self._finite = self._combine()
        loss_sum, correct, seen = self.results.sum(axis=0)
        return loss_sum / seen, int(correct)

    def step(self) -> None:
        """Worker 0's part of the update (the others do theirs at the same time)."""
        if self._finite:
            self._update(self._step_command)
        self.optimizer.step_count += 1

    def wait(self) -> None:
        """Until every worker has finished its update: then the parameters and the optimizer's
        state are whole (for a checkpoint, an evaluation, the best weights)."""
        self._command(_WAIT)
        self._meet()
        self._adopt_new_state()

    def predict(self, x) -> np.ndarray:
        """Logits of the array named ``eval_x`` at construction, in eval mode, every worker taking
        a share of the images."""
        if x is not self.eval_x:
            raise ValueError("DataParallel.predict works on the eval_x array it was made with")
        self._command(_EVAL, len(x))
        self._meet()
        self._eval_share(len(x))
        self._meet()
        self._adopt_new_state()
        return self.logits.copy()

    def _command(self, command, n=0, seed=0, lr=0.0, steps=0, alone=False) -> int:
        k = self._generation % 2
        self.control[k] = (command, n, seed, lr, steps, alone)
        return k

    def _meet(self) -> None:
        self._generation += 1
        if self.rank == 0:
            self.meeting.lead(self._check_workers)
        else:
            self.meeting.join(self.rank, self._check_parent)

    # -- every worker's work ------------------------------------------------------------------
    def _train_share(self, command) -> None:
        """Forward and backward of this worker's share; ``command`` is (slot, *control row)."""
        k, _, n, seed, _, _, alone = command
        n, alone = int(n), bool(alone)
        start, stop = (0, n if self.rank == 0 else 0) if alone else shares(n, self.workers)[self.rank]
        if stop == start:   # no images for this worker in this step (a batch smaller than W)
            self.results[self.rank] = 0
            return
        idx = self.indices[k, start:stop]
        xb, yb = self.x[idx], self.y[idx]
        share_rng = np.random.default_rng([int(seed), self.rank])
        previous = nn_init.set_rng(share_rng)   # dropout in this share draws from the share's generator
        for m in self._norms:                   # a batch on worker 0 alone needs no exchange
            m.across = None if alone else self._sum_over_workers
        try:
            if self.augment is not None:
                xb = self.augment(xb, share_rng)
            logits = self.model(xb)
            loss = self.loss_fn(logits, yb)
            correct = int(np.count_nonzero(logits.argmax(axis=1) == yb))
            grad = self.loss_fn.backward()
            grad *= grad.dtype.type((stop - start) / n)   # this share's part of the batch's mean
            for p in self.optimizer.params:
                p.grad = None
            self.model.backward(grad, need_input_grad=False)
        finally:
            nn_init.set_rng(previous)
        row = self.grads[self.rank]
        for (name, p), a, b in zip(self.model.named_parameters(), self.offsets, self.offsets[1:]):
            if p.grad is None:
                raise WorkerError(t("parallel.no_gradient", name=name))
            row[a:b].reshape(p.shape)[...] = p.grad
        self.results[self.rank] = (loss * (stop - start), correct, stop - start)

    def _combine(self) -> bool:
        """After this worker's share: wait until every share is done (G is whole), then whether
        the batch's loss is finite (only then does an update follow)."""
        self._meet()
        return math.isfinite(self.results.sum(axis=0)[0])

    def _update(self, command) -> None:
        """Σ of G's rows over this worker's range, then the optimizer's step there."""
        _, _, _, _, lr, steps, alone = command
        a, b = self.ranges[self.rank]
        sum_rows(self.grads[:1 if alone else self.workers, a:b], out=self.total[a:b])
        if self._sliced is None:
            self._sliced = self._sliced_optimizer(self._range_pieces(a, b))
            for p, (i, key) in zip(self._sliced[0].params, self._sliced[1]):
                p.grad = optim_piece(self._shaped(self.total, i), key)
        self._optimizer_step(lr, steps)

    def _optimizer_step(self, lr, steps) -> None:
        """This worker's optimizer step over its pieces (``_sliced``), at the run's lr and step."""
        opt, pieces, views = self._sliced
        opt.lr, opt.step_count = float(lr), int(steps)
        opt.step()
        for name, (flat, present) in self.state.items():   # a buffer created by this step (SGD's first)
            buffers = getattr(opt, name)
            for j, (i, _) in enumerate(pieces):
                if buffers[j] is not None and buffers[j] is not views[name][j]:
                    views[name][j][...] = buffers[j]
                    buffers[j] = views[name][j]
                    present[i] = 1

    def _range_pieces(self, a: int, b: int) -> list:
        """The pieces (i, slice of the flattened parameter i) that make up numbers [a, b) of all
        the parameters laid end to end."""
        return [(i, slice(max(a, lo) - lo, min(b, hi) - lo))
                for i, (lo, hi) in enumerate(zip(self.offsets, self.offsets[1:])) if lo < b and a < hi]

    def _shaped(self, flat: np.ndarray, i: int) -> np.ndarray:
        """Parameter i's part of an array laid out like all the parameters end to end (``flat``,
        ``total``, a state buffer), in the parameter's shape."""
        return flat[self.offsets[i]:self.offsets[i + 1]].reshape(self.optimizer.params[i].shape)

    def _sliced_optimizer(self, pieces):
        """This worker's optimizer over ``pieces`` (``Optimizer.sliced``), its state in the
        shared buffers: (optimizer, pieces, {buffer name: the pieces' shared views})."""
        views = {name: [optim_piece(self._shaped(flat, i), key) for i, key in pieces]
                 for name, (flat, _) in self.state.items()}
        opt = self.optimizer.sliced(pieces)
        for name, (flat, present) in self.state.items():
            setattr(opt, name, [v if present[i] else None for v, (i, _) in zip(views[name], pieces)])
        return opt, pieces, views

    def _adopt_new_state(self) -> None:
        """Worker 0's optimizer takes the buffers that workers created (SGD's momentum)."""
        for name, (flat, present) in self.state.items():
            buffers = self.optimizer._buffers()[name]
            for i, (a, b) in enumerate(zip(self.offsets, self.offsets[1:])):
                if buffers[i] is None and present[i]:
                    buffers[i] = flat[a:b].reshape(self.optimizer.params[i].shape)

    def _eval_share(self, n: int) -> None:
        from .train import predict_logits
        start, stop = shares(n, self.workers)[self.rank]
        if stop > start:
            # one core per worker, and together no more memory than one process's batches of 1000
            logits = predict_logits(self.model, self.eval_x[start:stop], max(1, 1000 // self.workers), workers=1)
            self.logits[start:stop] = logits.reshape(stop - start, -1)

    def _sum_over_workers(self, values: np.ndarray) -> np.ndarray:
        """Σ of ``values`` over the workers (BatchNorm's partial sums: statistics of the whole
        batch). Every worker adds the same rows in the same order, so all get the same numbers."""
        k = self._exchanges % 2      # two slot sets: a slow reader of one never sees the next written
        self._exchanges += 1
        flat = np.asarray(values).reshape(-1)
        self.exchange[k, self.rank, :flat.size] = flat
        self._meet()
        return self.exchange[k, :, :flat.size].sum(axis=0).astype(flat.dtype).reshape(np.shape(values))

    # -- the other workers --------------------------------------------------------------------
    def _worker_main(self, rank: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is worker 0's to handle
        self.rank = rank
        try:
            while True:
                self._meet()
                k = (self._generation - 1) % 2
                command = (k, *self.control[k])   # a copy: the slot is written again later
                kind = int(command[1])
                if kind == _STOP:
                    break
                if kind == _TRAIN:
                    self._train_share(command)
                    if self._combine():   # else worker 0 stops training: the loss is not finite
                        self._update(command)
                elif kind == _EVAL:
                    self._eval_share(int(command[2]))
                    self._meet()
        except BaseException as e:  # noqa: BLE001 - every failure must reach worker 0 as a message
            text = f"{type(e).__name__}: {e}".encode("utf-8", "replace")[:self.errors.shape[1] - 1]
            self.errors[rank, :len(text)] = np.frombuffer(text, np.uint8)
            os._exit(1)
        os._exit(0)

    def _check_parent(self) -> None:
        if os.getppid() != self._parent:   # worker 0 is gone: nobody will ever let us go
            os._exit(0)

    def _check_workers(self) -> None:
        for rank, process in enumerate(self.processes, start=1):
            code = process.exitcode
            if code is not None:
                self._failed = True
                raise WorkerError(self._describe_failure(rank, process, code))

    def _describe_failure(self, rank: int, process, code: int) -> str:
        text = bytes(self.errors[rank]).split(b"\0", 1)[0].decode("utf-8", "replace")
        if text:
            return t("parallel.worker_failed", rank=rank, workers=self.workers, error=text)
        if code < 0:
            try:
                how = t("parallel.by_signal", signal=signal.Signals(-code).name)
            except ValueError:
                how = t("parallel.by_signal", signal=-code)
        else:
            how = t("parallel.exit_code", code=code)
        return t("parallel.worker_died", rank=rank, workers=self.workers, pid=process.pid, how=how)

    # -- the end ------------------------------------------------------------------------------
    def close(self, abort: bool = False) -> None:
        """Stop the workers (told to, or killed when ``abort`` or when they do not stop in
        STOP_GRACE seconds), then give the model and optimizer private arrays again."""
        if not self._started:
            return
        self._started = False
        try:
            if not abort and not getattr(self, "_failed", False) and all(p.exitcode is None for p in self.processes):
                try:
                    self._command(_STOP)
                    self._meet()
                except WorkerError:
                    abort = True
            for process in self.processes:
                if abort:
                    process.kill()
                process.join(STOP_GRACE)
                if process.exitcode is None:
                    process.kill()
                    process.join()
        finally:
            self._restore()

    def _restore(self) -> None:
        self._adopt_new_state()
        for p in self.optimizer.params:
            p.data = np.array(p.data)
            p.grad = None
        for buffers in self.optimizer._buffers().values():
            for i, b in enumerate(buffers):
                if b is not None:
                    buffers[i] = np.array(b)
        for m in self._norms:
            m.across = None
        nn_init.set_rng(self._rng_before)
        self._blas.__exit__(None, None, None)

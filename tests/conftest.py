"""Test-wide settings: CPU only, cheap XLA compilation (tests are compile-bound), headless GL."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                                   "--xla_llvm_disable_expensive_passes=true")
# Many tests compile the same small programs (one set per train() call); a compilation cache
# shared by the pytest-xdist workers compiles each of them once per machine.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_collection_modifyitems(config, items):
    """Spread the slow learning tests over the xdist workers' first chunks.

    ``--dist worksteal`` hands worker k the k-th contiguous chunk of the collection and steals
    from the tail of a queue. Sorting the slow tests to the front would put all of them in
    worker 0's chunk, run one after the other; instead each worker's chunk starts with its
    share of them (longest first to the least loaded worker, by the ``minutes`` of their
    ``slow`` marker) and ends with short tests that the other worker may steal.

    Tests marked ``extended`` (the objectives' own learning tests, RePo and TACO: ~20 min
    more) run only when the ``-m`` expression names them (``-m extended``)."""
    if "extended" not in (config.option.markexpr or ""):
        dropped = [item for item in items if item.get_closest_marker("extended") is not None]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item.get_closest_marker("extended") is None]
    workers = _num_workers(config)
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if workers < 2 or not slow:
        return
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    shares, loads = [[] for _ in range(workers)], [0.0] * workers
    for item in sorted(slow, key=_minutes, reverse=True):
        k = loads.index(min(loads))
        shares[k].append(item)
        loads[k] += _minutes(item)
    ordered, start = [], 0
    for k in range(workers):
        # xdist sends node k len(pending) // (workers - k) of what is still pending
        size = (len(items) - start) // (workers - k)
        take = max(0, size - len(shares[k]))
        ordered += shares[k] + fast[:take]
        fast = fast[take:]
        start += len(shares[k]) + take
    items[:] = ordered + fast


def _minutes(item) -> float:
    """A slow test's minutes on the 2-core CI machine beside the other worker
    (``@pytest.mark.slow(minutes=)``, from CI's ``--durations``), for balance only."""
    return float(item.get_closest_marker("slow").kwargs.get("minutes", 1.0))


def _num_workers(config) -> int:
    """xdist sets PYTEST_XDIST_WORKER_COUNT in each worker, where the schedule's collection is made."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))

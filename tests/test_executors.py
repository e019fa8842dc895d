"""Process pool and dask.distributed give what the serial run gives."""

import os

import pytest
from sample_jobs import CopyText, CountLoads, ImportText, Scale, SumPlate, read_text, write_inputs
from test_crash_and_lock import outputs

from batchlib import run_workflow
from batchlib.executors import DaskExecutor
from batchlib.state.ledger import Ledger


def chain():
    return [CopyText(), ImportText(), Scale(), SumPlate()]


def ledger_states(folder):
    ledger = Ledger(os.path.join(folder, "batchlib"), writable=False)
    return {
        job: {name: (r.state, r.params, r.version, r.error) for name, r in ledger.records(job).items()}
        for job in ledger.jobs()
    }


def make_plate(tmp_path, n=12):
    raw = str(tmp_path / "raw")
    write_inputs(raw, n)
    with open(os.path.join(raw, "f005.txt"), "w") as f:
        f.write("5 FAIL")  # CopyText fails on it, ImportText does not
    return raw


def run_chain(folder, raw, **kwargs):
    jobs = [CopyText(), ImportText(input_folder=raw), Scale(), SumPlate()]
    return run_workflow("wf", folder, jobs, input_folder=raw, ignore_failed_outputs=True, progress=False, **kwargs)


def test_dask_local_cluster_matches_serial(tmp_path):
    raw = make_plate(tmp_path)
    serial = str(tmp_path / "serial")
    run_chain(serial, raw)
    distributed = str(tmp_path / "dask")
    results = run_chain(distributed, raw, executor="dask", n_jobs=2)
    assert results["CopyText"].failed == 1 and results["Scale"].processed == 12
    assert outputs(distributed) == outputs(serial)
    assert ledger_states(distributed) == ledger_states(serial)


def test_dask_scheduler_address(tmp_path):
    raw = make_plate(tmp_path, n=4)
    executor = DaskExecutor(n_workers=1)  # a LocalCluster we can give the address of
    try:
        address = executor._client.scheduler.address
        folder = str(tmp_path / "plate")
        results = run_chain(folder, raw, dask_scheduler=address)
        assert results["Scale"].processed == 5  # f000-f003 and f005
    finally:
        executor.close()


def test_process_pool_matches_serial(tmp_path):
    raw = make_plate(tmp_path)
    serial = str(tmp_path / "serial")
    run_chain(serial, raw)
    pooled = str(tmp_path / "pool")
    run_chain(pooled, raw, n_jobs=2)
    assert outputs(pooled) == outputs(serial)
    assert ledger_states(pooled) == ledger_states(serial)


def test_model_loaded_once_per_worker(tmp_path):
    raw = str(tmp_path / "raw")
    write_inputs(raw, 24)
    logs = tmp_path / "loads"
    logs.mkdir()
    folder = str(tmp_path / "plate")
    run_workflow("wf", folder, [CountLoads(str(logs))], input_folder=raw, n_jobs=2, progress=False)
    loads = os.listdir(logs)
    pids = {read_text(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".pid")}
    assert len(loads) == len(pids) <= 2  # one load per worker process, not per file (24)
    serial_logs = tmp_path / "serial_loads"
    serial_logs.mkdir()
    run_workflow("wf2", str(tmp_path / "p2"), [CountLoads(str(serial_logs))], input_folder=raw, progress=False)
    assert len(os.listdir(serial_logs)) == 1


def _square_or_fail(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def test_map_parallel_keeps_order_and_names_a_failing_call():
    from batchlib.errors import OutputError
    from batchlib.executors import ProcessExecutor

    job = CopyText()
    assert job.map_parallel(_square_or_fail, [(1,), (2,)]) == [1, 4]  # no executor: a plain loop
    with ProcessExecutor(2) as executor, job.lending_workers(executor):
        assert job.map_parallel(_square_or_fail, [(x,) for x in (5, 1, 4, 2)]) == [25, 1, 16, 4]
        with pytest.raises(OutputError, match=r"_square_or_fail\(3,\).*three is not allowed"):
            job.map_parallel(_square_or_fail, [(1,), (3,)])


def test_call_in_worker_runs_in_a_worker_process():
    from batchlib.errors import OutputError
    from batchlib.executors import ProcessExecutor

    job = CopyText()
    assert job.call_in_worker(os.getpid) == os.getpid()  # no executor: here
    with ProcessExecutor(2) as executor:
        with job.lending_workers(executor):
            assert job.call_in_worker(os.getpid) != os.getpid()
            assert job.call_in_worker(_square_or_fail, 4) == 16
            with pytest.raises(OutputError, match="three is not allowed"):
                job.call_in_worker(_square_or_fail, 3)
        assert job.call_in_worker(os.getpid) == os.getpid()  # the loan ends with the block


class _CycleMarker:
    """In a reference cycle: only the garbage collector frees it, and then it writes ``path``."""

    def __init__(self, path):
        self.path = path
        self.myself = self

    def __del__(self, _open=os.open, _close=os.close, flags=os.O_CREAT | os.O_WRONLY):
        _close(_open(self.path, flags))


def _leave_exit_markers(folder):
    import atexit

    if "_marker" not in globals():  # once per worker
        atexit.register(lambda: open(os.path.join(folder, f"atexit-{os.getpid()}"), "w").close())
        globals()["_marker"] = _CycleMarker(os.path.join(folder, f"collected-{os.getpid()}"))
    return os.getpid()


def test_workers_run_atexit_handlers_but_skip_the_final_garbage_collection(tmp_path):
    from batchlib.executors import ProcessExecutor

    with ProcessExecutor(2) as executor:
        pids = set(executor.map_unordered(_leave_exit_markers, [(str(tmp_path),)] * 4))
    assert pids and all(os.path.exists(tmp_path / f"atexit-{pid}") for pid in pids)  # e.g. log handlers flushed
    assert not any(os.path.exists(tmp_path / f"collected-{pid}") for pid in pids)  # objects frozen at exit


def _log_debug(message):
    from batchlib.log import get_logger

    get_logger("stardist").debug(message)


def test_workers_log_at_the_level_of_loglevel(monkeypatch, capfd):
    from batchlib.executors import ProcessExecutor

    monkeypatch.setenv("LOGLEVEL", "DEBUG")  # read by the worker, which inherits the environment
    with ProcessExecutor(1) as executor:
        list(executor.map_unordered(_log_debug, [("printed by StarDist in a worker",)]))
    assert "DEBUG Workflow.stardist: printed by StarDist in a worker" in capfd.readouterr().err

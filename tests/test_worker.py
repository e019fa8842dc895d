"""What runs in a worker (worker.process_batch): validation, batch retry, atomic outputs, verdicts."""

import os

from sample_jobs import BatchedCopy, CopyText, write_inputs

from batchlib.state.atomic import TMP_PREFIX
from batchlib.state.ledger import DONE, FAILED, INVALID
from batchlib.worker import WorkItem, process_batch


def items_for(raw, plate, names):
    return [WorkItem(n, [os.path.join(raw, n)], [os.path.join(plate, n.replace(".txt", ".out"))]) for n in names]


def test_one_bad_file_does_not_fail_its_batch_mates(plate):
    folder, raw = plate
    os.makedirs(folder)
    names = [os.path.basename(p) for p in write_inputs(raw, 4)]
    with open(os.path.join(raw, names[1]), "w") as f:
        f.write("FAIL")  # run raises on the whole batch; each file is then tried alone
    with open(os.path.join(raw, names[2]), "w") as f:
        f.write("INVALID")  # validate_input refuses it: never passed to run
    results = {r.name: r for r in process_batch(BatchedCopy(), items_for(raw, folder, names), {})}
    assert [results[n].state for n in names] == [DONE, FAILED, INVALID, DONE]
    assert "cannot process" in results[names[1]].error and "marked INVALID" in results[names[2]].error
    # Outputs exist only for the files that succeeded, under their final names, and nothing temporary is left.
    assert sorted(os.listdir(folder)) == sorted(n.replace(".txt", ".out") for n in (names[0], names[3]))
    assert not [n for n in os.listdir(folder) if n.startswith(TMP_PREFIX)]
    # A successful result carries the stamp of its output for the ledger.
    out = os.path.join(folder, names[0].replace(".txt", ".out"))
    st = os.stat(out)
    assert list(results[names[0]].outputs.values()) == [f"{st.st_size}:{st.st_mtime_ns}"]


def test_a_missing_input_is_invalid_not_failed(plate):
    folder, raw = plate
    os.makedirs(folder)
    result = process_batch(CopyText(), items_for(raw, folder, ["gone.txt"]), {})[0]
    assert result.state == INVALID and "gone.txt" in result.error

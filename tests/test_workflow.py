"""The engine's entry points: run_workflow's options and run_job."""

import json
import os

from sample_jobs import CopyText, read_text, write_inputs

from batchlib import run_job


def test_run_job_runs_one_job_as_a_workflow_of_its_own(plate):
    folder, raw = plate
    write_inputs(raw, 3)
    result = run_job(CopyText(suffix="!"), folder, input_folder=raw, progress=False)
    assert (result.processed, result.skipped, result.state) == (3, 0, "processed")
    assert read_text(os.path.join(folder, "f002.out")) == "2!"
    bookkeeping = os.path.join(folder, "batchlib")
    with open(os.path.join(bookkeeping, "CopyTextWorkflow.status")) as f:  # the workflow, named after the job
        assert json.load(f)["state"] == "done"
    with open(os.path.join(bookkeeping, "CopyText.status")) as f:  # the job's own status, not overwritten
        assert json.load(f)["state"] == "processed"
    again = run_job(CopyText(suffix="!"), folder, input_folder=raw, progress=False)
    assert (again.processed, again.skipped) == (0, 3)
    forced = run_job(CopyText(suffix="!"), folder, input_folder=raw, progress=False, force_recompute=True)
    assert forced.processed == 3

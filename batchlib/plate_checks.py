"""Checks across the plate: inputs a job refuses because of the other inputs.

A job that overrides :meth:`~batchlib.base.BatchJob.plate_problems` (the
importer: a file unlike the plate's others, a second file for a site) is
asked, in the driver, before any file goes to a worker. It decides from the
:meth:`~batchlib.base.BatchJob.input_facts` of every input (a header each);
the facts are kept in the ledger and read again only when a file's stamp
changes, so a run with a few new files reads a few headers.
"""

from __future__ import annotations

import logging
import os

from .base import BatchJob
from .capture import captured_warnings
from .layout import JobLayout
from .oserrors import resource_error
from .scan import FolderScan, ledger_name
from .state.ledger import Ledger


def checks_across_plate(job: BatchJob) -> bool:
    """True if ``job`` overrides :meth:`~batchlib.base.BatchJob.plate_problems`."""
    return type(job).plate_problems is not BatchJob.plate_problems


def gather_facts(
    job: BatchJob, layout: JobLayout, scan: FolderScan, ledger: Ledger, plate_folder: str, logger: logging.Logger
) -> dict[str, dict]:
    """:meth:`~batchlib.base.BatchJob.input_facts` of every input of ``job``, by name.

    Facts the ledger kept for a file whose stamp has not changed (nor the
    job's ``facts_version``) are reused; others are read now and stored in the ledger. A file whose facts cannot
    be read gets none (its own validation will say why).
    """
    known = ledger.input_facts(job.name)
    facts = {}
    for name in sorted(scan.matching(layout.input_folder, layout.input_pattern)):
        path = os.path.join(layout.input_folder, name)
        key = ledger_name(path, plate_folder)
        stamp = scan.stamp(path)
        if stamp is not None:  # facts read by a former way of reading headers are read again
            stamp = f"{stamp} facts-v{job.facts_version}"
        cached = known.get(key)
        if stamp is not None and cached is not None and cached[0] == stamp:
            facts[name] = cached[1]
            continue
        with captured_warnings() as caught:
            try:
                facts[name] = job.input_facts(path)
            except Exception as err:
                if resource_error(err) is not None:
                    raise
                facts[name] = {}
        for message in caught:  # validation reports them with the file's verdict
            logger.debug("%s: reading the header of %s: %s", job.name, name, message)
        ledger.observe_facts(job.name, key, stamp, facts[name])
    return facts

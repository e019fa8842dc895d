"""Bookkeeping of a plate folder: ledger, lock, status files, stamps, atomic writes."""

#: The bookkeeping folder inside a plate folder (never an input, never uploaded).
BOOKKEEPING_FOLDER = "batchlib"

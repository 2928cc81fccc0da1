"""Read models projected from the ledger's event log, exactly once, by the library's runner."""

"""cdr: call detail records, written from the call-event stream (one row per finished call)."""

// Placeholder: the worker is being written.

// Placeholder: the supervisor is being written.

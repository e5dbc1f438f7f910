"""The master: the supervisor loop and the parts it drives (pool, generations, stop, boot,
upgrade, policies)."""

"""What every package of hootwatch shares: errors a user can act on (and their exit codes), durable file writes."""

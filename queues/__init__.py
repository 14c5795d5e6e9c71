"""Queues and seats: opening hours, local-first queue choice, agent state, statistics."""

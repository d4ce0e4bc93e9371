"""The training engine: losses, optimizers, schedules, callbacks and the loop."""

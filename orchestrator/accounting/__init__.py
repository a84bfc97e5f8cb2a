"""GPU-hours: what a job will cost (from its script), what the campaign spent (the ledger), and what each
submission ran with (provenance). Above the scheduler and the store; the monitor and the CLI use it.
"""

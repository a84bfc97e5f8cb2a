"""What a campaign's results say: scaling-law fits and compute-optimal allocation (numpy and scipy needed)."""

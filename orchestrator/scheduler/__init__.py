"""Scheduler backends behind one small interface (see `base.Scheduler`)."""

"""Adapters to the outside world (hypervisors, storage, networks), each behind an abstract interface."""

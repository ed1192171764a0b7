"""The real-VM fixtures of tests/integration, for the attack tests that need a real guest."""
from tests.integration.conftest import guest_dir, real_cloud_factory

__all__ = ["guest_dir", "real_cloud_factory"]

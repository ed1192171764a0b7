"""ivfarm: virtual farms on libvirt hypervisors, a small private IaaS cloud with an EC2 facade."""

__version__ = "0.1.0"

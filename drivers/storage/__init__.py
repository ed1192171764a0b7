"""Storage drivers: where a VM's disks live on its host."""

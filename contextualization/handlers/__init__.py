"""Guest-side cloud-init part-handlers shipped inside ivfarm's MIME user-data archives."""

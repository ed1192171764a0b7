"""cloud-init contextualization for ivfarm guests.

``seed`` builds NoCloud seed ISOs, ``metadata`` the meta-data, network-config and EC2 metadata
documents, ``packer`` turns an INFN ``#multiple-config`` file plus part-handlers into one MIME
user-data archive, and ``handlers/`` holds the guest-side part-handlers shipped in that archive.
This package never imports ``ivfarm``.
"""

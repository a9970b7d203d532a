"""Network: firewall change pipeline and the IP plan (IPAM) of each site."""

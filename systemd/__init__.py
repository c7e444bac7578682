"""The systemd unit and the example daemon config, shipped in the package (`hootwatch systemd-unit` prints the unit)."""

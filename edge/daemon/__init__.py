"""The field daemon (`hootwatch run`): one model over a watched folder and/or a microphone, on a schedule, with a
status file, systemd's watchdog and periodic exports, until SIGTERM. service.py is the lifecycle; the rest are its
parts."""

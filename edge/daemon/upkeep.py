"""The store's upkeep while the daemon runs, each step reported in status.json:

- its integrity check (`PRAGMA quick_check`, edge/store/integrity.py) at start and every CHECK_EVERY_H: a store
  that fails it at start is set aside and replaced by the newest sound backup (or a new store), and the
  recordings it must scan again are handed to the folder source; one that fails while running stops the daemon
  (exit status 5), so that the next start (systemd's restart) does the same. A store that cannot be checked
  (locked by another process, unreadable) is reported as such and never set aside. A run that met a damaged store
  exits 5, not 0, even when it went on: someone should look at the disk.
- its backups (edge/store/backup.py) into `output.backup_dir`, at start when the newest is older than
  `backup_every_h`, then every `backup_every_h`, keeping `backup_keep`.
- its WAL: a PASSIVE checkpoint every CHECKPOINT_S (never waits for the scanning loop or the review app) keeps
  the WAL from growing with the store; TRUNCATE at shutdown empties it. Its size now and its largest since
  start are in status.json.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

from hootwatch.edge.core.errors import HootwatchError
from hootwatch.edge.store.backup import backup_store, backups
from hootwatch.edge.store.database import STORE_NAME, DetectionStore
from hootwatch.edge.store.integrity import Check, Recovery, check_store, recover, recovery_pending
from .config import DaemonConfig
from .health import Health, utc_now_iso

log = logging.getLogger("hootwatch.daemon")

CHECK_EVERY_H = 24.0
CHECKPOINT_S = 60.0
EXIT_STORE_DAMAGED = 5


class Upkeep:
    def __init__(self, cfg: DaemonConfig, health: Health, stop: threading.Event) -> None:
        self.out, self.health, self.stop = cfg.output, health, stop
        self.store_path = Path(cfg.output.dir) / STORE_NAME
        self.failed = False  # the store failed a check during this run: exit status 5

    # ------------------------------------------------------------ integrity
    def check_at_start(self) -> Recovery | None:
        """Check the store before anything opens it; on failure replace it (integrity.recover) and say so; a
        recovery cut short by a kill or a power cut is finished."""
        check = check_store(self.store_path)
        if self._checked(check, "at start") and not recovery_pending(self.store_path):
            return None
        self.failed = True
        recovery = recover(self.store_path, self.out.backup_dir)
        log.error("detection store replaced: %s", recovery.summary())
        self.health.update(store_recovery=recovery.summary())
        return recovery

    def check_now(self) -> None:
        """The daily check; a failure stops the daemon (exit 5) so that the next start replaces the store."""
        if not self._checked(check_store(self.store_path), "daily"):
            log.error("stopping: the next start sets the damaged store aside and restores the newest backup "
                      "(systemd restarts hootwatch by itself)")
            self.stop.set()

    def _checked(self, check: Check, when: str) -> bool:
        self.health.update(store_checked_utc=utc_now_iso())
        if check.unchecked:  # locked or unreadable: not damage, never set aside; the next check tries again
            log.warning("store check (%s) could not be done: %s", when, check.unchecked)
            self.health.update(store_check=f"could not check: {check.unchecked}")
            return True
        if check.ok:
            self.health.update(store_check=f"ok ({check.seconds:.1f} s)")
            log.info("store check (%s): ok in %.1f s", when, check.seconds)
            return True
        self.failed = True
        why = "; ".join(check.problems[:3])
        log.error("the detection store %s failed its integrity check (%s): %s", self.store_path, when, why)
        self.health.update(store_check=f"FAILED: {why}", last_error=f"store failed its integrity check: {why}")
        return False

    # ------------------------------------------------------------ backups
    def backup(self) -> None:
        if self.out.backup_dir is None:
            return
        try:
            b = backup_store(self.store_path, self.out.backup_dir, keep=self.out.backup_keep)
        except Exception as exc:  # whatever it was, status.json says so in words (APScheduler would only log it)
            error = exc if isinstance(exc, HootwatchError) else HootwatchError(
                f"backup into {self.out.backup_dir} failed: {exc}", "see the log; the next backup tries again")
            log.error("%s (fix: %s)", error.message, error.hint)
            self.health.update(last_backup=f"FAILED: {error.message}", last_error=error.message)
            return
        log.info("store backed up to %s (%.1f MB in %.1f s)", b.path, b.bytes / 1e6, b.seconds)
        self.health.update(last_backup=str(b.path), last_backup_utc=utc_now_iso())
        if b.same_disk:
            warning = (f"backup_dir {self.out.backup_dir} is on the same disk as the store: the backups are lost "
                       f"with that card; put backup_dir on another disk (a USB stick)")
            log.warning("%s", warning)
            self.health.update(last_error=warning)

    def first_backup(self, now: dt.datetime) -> dt.datetime:
        """Now when the newest backup (by mtime) is older than backup_every_h (or there is none), else when it comes
        due; a backup dated in the future (a clock once set wrong) counts as taken now, never later."""
        found = backups(self.out.backup_dir)
        try:
            newest = dt.datetime.fromtimestamp(found[0].stat().st_mtime, dt.timezone.utc) if found else None
        except OSError:
            newest = None
        due = min(newest, now) + dt.timedelta(hours=self.out.backup_every_h) if newest else now
        return max(now, due)

    # ------------------------------------------------------------ the WAL
    def checkpoint(self, mode: str = "PASSIVE") -> None:
        try:
            with DetectionStore(self.store_path) as store:
                store.checkpoint(mode)
        except Exception as exc:  # a busy or full disk: the next one tries again
            log.warning("WAL checkpoint (%s) failed: %s", mode, getattr(exc, "message", exc))
        self.measure_wal()

    def measure_wal(self) -> None:
        wal = DetectionStore.wal_bytes(self.store_path)
        self.health.update(wal_bytes=wal, wal_high_bytes=max(wal, self.health.wal_high_bytes))

    def schedule(self, sched) -> None:
        sched.add_job(self.check_now, "interval", hours=CHECK_EVERY_H, id="store-check")
        sched.add_job(self.checkpoint, "interval", seconds=CHECKPOINT_S, id="checkpoint")
        if self.out.backup_dir is not None:
            sched.add_job(self.backup, "interval", hours=self.out.backup_every_h, id="backup",
                          next_run_time=self.first_backup(dt.datetime.now(dt.timezone.utc)))
